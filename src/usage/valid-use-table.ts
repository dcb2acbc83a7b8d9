import { PACKED_ID_BYTES, packId, unpackId } from "../keys/packed-id.ts";

const EMPTY = -1;
const FIRST_CAPACITY = 256;

/**
 * Valid uses per key within one minute, in flat typed arrays keyed by the packed key id
 * (keys/packed-id.ts): counting a use allocates nothing.
 *
 * Why not a Map of objects: with a million keys in use nearly every verification names a
 * key not yet counted in the interval, and an entry (the id string, a tally object, the
 * Map's slot) lives until the next flush, long enough to be promoted to V8's old
 * generation. Measured with 1,000,000 keys at ~10,000 verifications/s: the old generation
 * grew ~4.5 MB a second and RSS ended ~45 MB higher than without counting. Entries here
 * live in arrays that are cleared, not dropped, after each flush.
 *
 * Open addressing with linear probing, at most half full. The last twelve bytes of a
 * packed id are its random part (fifteen base62 characters), so four of them are the hash.
 */
export class ValidUseTable {
  private capacity = 0;
  private size = 0;
  private ids = Buffer.alloc(0);
  private counts = new Uint32Array(0);
  private lastUses = new Float64Array(0);
  private slots = new Int32Array(0);
  private mask = 0;
  private readonly scratch = Buffer.alloc(PACKED_ID_BYTES);

  /** Distinct keys counted since the last `clear`. */
  get length(): number {
    return this.size;
  }

  /**
   * Counts one valid use. False (nothing counted) when the id is not of the standard
   * form Gatehouse gives its keys: the caller counts those some other way.
   */
  add(keyId: string, at: number): boolean {
    if (!packId(keyId, this.scratch, 0)) return false;
    this.countScratch(at);
    return true;
  }

  /** Counts one valid use of the key whose packed id (PACKED_ID_BYTES) is in `packed`. */
  addPacked(packed: Buffer, at: number): void {
    packed.copy(this.scratch, 0, 0, PACKED_ID_BYTES);
    this.countScratch(at);
  }

  /** Counts one use of the id in `scratch`. */
  private countScratch(at: number): void {
    const scratch = this.scratch;
    if ((this.size + 1) * 2 > this.slots.length) this.grow(Math.max(FIRST_CAPACITY, this.capacity * 2));
    let slot = scratch.readUInt32LE(8) & this.mask;
    for (;;) {
      const entry = this.slots[slot] as number;
      if (entry === EMPTY) {
        const fresh = this.size++;
        scratch.copy(this.ids, fresh * PACKED_ID_BYTES);
        this.counts[fresh] = 1;
        this.lastUses[fresh] = at;
        this.slots[slot] = fresh;
        return;
      }
      if (this.holds(entry)) {
        this.counts[entry] = (this.counts[entry] as number) + 1;
        if (at > (this.lastUses[entry] as number)) this.lastUses[entry] = at;
        return;
      }
      slot = (slot + 1) & this.mask;
    }
  }

  /** The latest use of `keyId` counted here; 0 when none (or not of the standard form). */
  lastUseOf(keyId: string): number {
    const entry = this.find(keyId);
    return entry < 0 ? 0 : (this.lastUses[entry] as number);
  }

  /** The entry counting `keyId`, or -1 when it has none (or is not of the standard form). */
  find(keyId: string): number {
    if (this.size === 0 || !packId(keyId, this.scratch, 0)) return -1;
    let slot = this.scratch.readUInt32LE(8) & this.mask;
    for (;;) {
      const entry = this.slots[slot] as number;
      if (entry === EMPTY) return -1;
      if (this.holds(entry)) return entry;
      slot = (slot + 1) & this.mask;
    }
  }

  keyId(entry: number): string {
    return unpackId(this.ids, entry * PACKED_ID_BYTES);
  }

  count(entry: number): number {
    return this.counts[entry] as number;
  }

  lastUsed(entry: number): number {
    return this.lastUses[entry] as number;
  }

  /**
   * Entry numbers in key-id order (packed ids sort as their strings do: hex time, then
   * base62 digits in ASCII order), so writes land on neighbouring pages of the usage
   * table's primary key.
   */
  inIdOrder(): Int32Array {
    const order = new Int32Array(this.size);
    for (let entry = 0; entry < this.size; entry++) order[entry] = entry;
    const ids = this.ids;
    return order.sort((a, b) => {
      const at = a * PACKED_ID_BYTES;
      const bt = b * PACKED_ID_BYTES;
      for (let i = 0; i < PACKED_ID_BYTES; i++) {
        const d = (ids[at + i] as number) - (ids[bt + i] as number);
        if (d !== 0) return d;
      }
      return 0;
    });
  }

  /**
   * Forgets every count and keeps the arrays for the next interval, unless they are far
   * bigger than it is likely to need (a burst of keys once should not hold memory for good).
   */
  clear(): void {
    if (this.size === 0) return;
    if (this.capacity > FIRST_CAPACITY && this.size * 8 < this.capacity) {
      this.capacity = 0;
      this.ids = Buffer.alloc(0);
      this.counts = new Uint32Array(0);
      this.lastUses = new Float64Array(0);
      this.slots = new Int32Array(0);
      this.mask = 0;
    } else {
      this.slots.fill(EMPTY);
    }
    this.size = 0;
  }

  private holds(entry: number): boolean {
    const at = entry * PACKED_ID_BYTES;
    const ids = this.ids;
    const scratch = this.scratch;
    for (let i = PACKED_ID_BYTES - 1; i >= 0; i--) if (ids[at + i] !== scratch[i]) return false;
    return true;
  }

  private grow(capacity: number): void {
    const ids = Buffer.alloc(capacity * PACKED_ID_BYTES);
    this.ids.copy(ids, 0, 0, this.size * PACKED_ID_BYTES);
    const counts = new Uint32Array(capacity);
    counts.set(this.counts.subarray(0, this.size));
    const lastUsed = new Float64Array(capacity);
    lastUsed.set(this.lastUses.subarray(0, this.size));
    this.ids = ids;
    this.counts = counts;
    this.lastUses = lastUsed;
    this.capacity = capacity;
    this.slots = new Int32Array(capacity * 2).fill(EMPTY);
    this.mask = capacity * 2 - 1;
    for (let entry = 0; entry < this.size; entry++) {
      let slot = ids.readUInt32LE(entry * PACKED_ID_BYTES + 8) & this.mask;
      while (this.slots[slot] !== EMPTY) slot = (slot + 1) & this.mask;
      this.slots[slot] = entry;
    }
  }
}
