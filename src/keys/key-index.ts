import type { RateLimitOutcome } from "../ratelimit/key-rate-limiter.ts";
import type { IndexedKey, RateLimitPolicy } from "../storage/types.ts";
import { type AddressAllowlist, allowlistOf } from "./address-allowlist.ts";
import type { KeyStatus } from "./key-status.ts";
import { PACKED_ID_BYTES, packId, unpackId } from "./packed-id.ts";

/**
 * The index matches keys on the first 128 bits of their SHA-256 digest. A wrong key would
 * need a 128-bit second preimage (or, not knowing the digests, one guess in 2^128 per
 * stored key): the security level of AES-128 and of HMAC-SHA-256 tags cut to 128 bits,
 * for half the memory of the whole digest. Storage keeps the whole digest.
 */
const HELD_DIGEST_BYTES = 16;
const EMPTY = -1;
const FIRST_CAPACITY = 1024;
/** Expiry in whole seconds for "no expiry"; the milliseconds are kept apart. */
const NEVER = 0xffffffff;
/** The first expiry (in 2106) the columns cannot hold. */
const LAST_EXPIRY = NEVER * 1000;
/** Numbers of interned values fit 16 bits until there are more than this many. */
const NARROW_LIMIT = 0xffff;

interface Profile {
  scopes: readonly string[];
  permissions: readonly string[];
  rateLimit: RateLimitPolicy | null;
  allowlist: AddressAllowlist | null;
}

const NO_PROFILE: Profile = Object.freeze({
  scopes: Object.freeze([]),
  permissions: Object.freeze([]),
  rateLimit: null,
  allowlist: null,
});

/**
 * Distinct values kept once and referred to by number: a million keys share a handful of
 * combinations of scopes, permissions and rate-limit policy, and owners hold many keys. Number 0 is `first` (no value).
 */
class Interner<T> {
  private readonly numbers = new Map<string, number>();
  readonly values: T[];

  constructor(first: T) {
    this.values = [first];
  }

  number(name: string, value: T): number {
    let n = this.numbers.get(name);
    if (n === undefined) {
      n = this.values.length;
      this.values.push(value);
      this.numbers.set(name, n);
    }
    return n;
  }
}

/** Ids that Gatehouse makes are packed (packed-id.ts); any other id is kept aside whole. */
const ID_BYTES = PACKED_ID_BYTES;
/** Linear probing stays short while the table is at most this full. */
const MAX_LOAD = 0.7;

/**
 * Every active API key in memory, in flat typed arrays instead of objects, so that a
 * verification reads no storage and a million keys cost tens of megabytes, not hundreds,
 * and nothing for the garbage collector to trace.
 *
 * Records live in columns indexed by a record number; an open-addressing hash table
 * (linear probing, at most 70% full) maps a digest to its record. SHA-256 digests are
 * uniformly random, so their first four bytes are the hash. The index also holds each
 * key's fixed-window rate-limit counter, so counting a use allocates nothing either.
 *
 * Not a source of truth: storage is. ActiveKeys (active-keys.ts) loads it and keeps it in
 * step with the key change log.
 */
export class KeyIndex {
  private capacity = 0;
  private used = 0;
  private live = 0;
  private readonly free: number[] = [];
  private digests = Buffer.alloc(0);
  private ids = Buffer.alloc(0);
  /**
   * Expiry as whole seconds (NEVER for none) and the milliseconds beyond: 6 bytes a key
   * instead of a float's 8, exact to the millisecond until 2106 (keys live 10 years at most).
   */
  private expirySeconds = new Uint32Array(0);
  private expiryMillis = new Uint16Array(0);
  /**
   * Scopes, permissions and rate-limit policy together: few distinct combinations. Both
   * number columns are 16-bit until a number needs more (`widen`).
   */
  private profiles: Uint16Array | Uint32Array = new Uint16Array(0);
  private owners: Uint16Array | Uint32Array = new Uint16Array(0);
  private windows = new Uint32Array(0);
  private counts = new Uint32Array(0);
  private slots = new Int32Array(0);
  /** Number of slots: any size, not a power of two, so the table is just over 1/MAX_LOAD of the keys. */
  private slotCount = 0;
  /** slotCount / 2^32. */
  private scale = 0;
  /** Revocation times are rare (revoked keys leave the index; these are grace periods). */
  private readonly revoked = new Map<number, number>();
  private readonly oddIds = new Map<number, string>();
  private readonly profileInterner = new Interner<Profile>(NO_PROFILE);
  private readonly ownerInterner = new Interner<string | null>(null);

  /** `expected`: how many keys to make room for at once (growing later costs a copy). */
  constructor(expected = 0) {
    this.grow(Math.max(FIRST_CAPACITY, Math.ceil(expected * 1.05)));
  }

  /** Number of keys held. */
  get size(): number {
    return this.live;
  }

  /** The record number of the key with this digest, or -1. */
  find(digest: Buffer): number {
    const digests = this.digests;
    const slots = this.slots;
    const a = digest.readUInt32LE(0);
    const b = digest.readUInt32LE(4);
    const c = digest.readUInt32LE(8);
    const d = digest.readUInt32LE(12);
    const count = this.slotCount;
    let slot = this.slotOf(a);
    for (;;) {
      const record = slots[slot] as number;
      if (record === EMPTY) return -1;
      const at = record * HELD_DIGEST_BYTES;
      // Constant-time over the 128 bits (no early exit), without a Buffer view per probe.
      const differ =
        (digests.readUInt32LE(at) ^ a) |
        (digests.readUInt32LE(at + 4) ^ b) |
        (digests.readUInt32LE(at + 8) ^ c) |
        (digests.readUInt32LE(at + 12) ^ d);
      if (differ === 0) return record;
      slot = slot + 1 === count ? 0 : slot + 1;
    }
  }

  /**
   * The home slot of a digest whose first four bytes are `a`: the 32-bit value scaled to
   * the table's size (Lemire's multiply-shift, in place of a mask). `a` times the scale is
   * one rounding of an exact product, so it is the same for the same `a`, and below
   * `slotCount`.
   */
  private slotOf(a: number): number {
    return Math.floor(a * this.scale);
  }

  /**
   * Adds the key, or updates it in place (its rate-limit window carries on). A key that
   * expires after 2106 is not held (a miss sends verification to storage).
   */
  upsert(key: IndexedKey): void {
    if (key.digest.length !== 32) throw new Error("a key digest has 32 bytes");
    if (key.expiresAt !== null && key.expiresAt >= LAST_EXPIRY) {
      // Beyond what the expiry columns hold (configuration bounds lifetimes to 10 years):
      // such a key is left to storage, where a verification finds it, a little slower.
      this.remove(key.digest);
      return;
    }
    let record = this.find(key.digest);
    if (record < 0) {
      record = this.allocate();
      key.digest.copy(this.digests, record * HELD_DIGEST_BYTES, 0, HELD_DIGEST_BYTES);
      this.windows[record] = 0;
      this.counts[record] = 0;
      this.place(record);
      this.live++;
    }
    this.write(record, key);
  }

  /** Drops the key with this digest; false when it was not held. */
  remove(digest: Buffer): boolean {
    const record = this.find(digest);
    if (record < 0) return false;
    this.unplace(record);
    this.revoked.delete(record);
    this.oddIds.delete(record);
    this.free.push(record);
    this.live--;
    return true;
  }

  /** Drops every key that is revoked or expired at `now`; returns how many. */
  removeDead(now: number): number {
    const dead: Buffer[] = [];
    for (let record = 0; record < this.used; record++) {
      if (this.isFree(record)) continue;
      if (this.status(record, now) !== "active") {
        dead.push(Buffer.from(this.digests.subarray(record * HELD_DIGEST_BYTES, (record + 1) * HELD_DIGEST_BYTES)));
      }
    }
    for (const digest of dead) this.remove(digest);
    return dead.length;
  }

  id(record: number): string {
    const odd = this.oddIds.size > 0 ? this.oddIds.get(record) : undefined;
    return odd ?? unpackId(this.ids, record * ID_BYTES);
  }

  /**
   * Copies the record's packed id (keys/packed-id.ts) into `out`; false when the id is not
   * of the standard form and so is not held packed. For counting uses by the bytes
   * already at hand, without making the id a string and parsing it back.
   */
  copyPackedId(record: number, out: Buffer): boolean {
    if (this.oddIds.size > 0 && this.oddIds.has(record)) return false;
    this.ids.copy(out, 0, record * ID_BYTES, (record + 1) * ID_BYTES);
    return true;
  }

  scopes(record: number): readonly string[] {
    return (this.profileInterner.values[this.profiles[record] as number] as Profile).scopes;
  }

  permissions(record: number): readonly string[] {
    return (this.profileInterner.values[this.profiles[record] as number] as Profile).permissions;
  }

  ownerId(record: number): string | null {
    return this.ownerInterner.values[this.owners[record] as number] ?? null;
  }

  rateLimit(record: number): RateLimitPolicy | null {
    return (this.profileInterner.values[this.profiles[record] as number] as Profile).rateLimit;
  }

  /** Where the key may be used from; null for anywhere (nearly every key: no cost). */
  allowlist(record: number): AddressAllowlist | null {
    return (this.profileInterner.values[this.profiles[record] as number] as Profile).allowlist;
  }

  expiresAt(record: number): number | null {
    const seconds = this.expirySeconds[record] as number;
    return seconds === NEVER ? null : seconds * 1000 + (this.expiryMillis[record] as number);
  }

  revokedAt(record: number): number | null {
    return this.revoked.size > 0 ? (this.revoked.get(record) ?? null) : null;
  }

  /** The same rules as keyStatus(), on the indexed fields. */
  status(record: number, now: number): KeyStatus {
    if (this.revoked.size > 0) {
      const revokedAt = this.revoked.get(record);
      if (revokedAt !== undefined && revokedAt <= now) return "revoked";
    }
    const seconds = this.expirySeconds[record] as number;
    return seconds !== NEVER && seconds * 1000 + (this.expiryMillis[record] as number) <= now ? "expired" : "active";
  }

  /**
   * Takes one use from the key's fixed window. Windows are aligned to the clock (window n
   * covers [n·w, (n+1)·w)), so no timer per key is needed: a counter from an earlier
   * window is simply stale and starts over.
   */
  take(record: number, policy: RateLimitPolicy, now: number): RateLimitOutcome {
    const windowMs = policy.windowSeconds * 1000;
    const window = Math.floor(now / windowMs);
    let count = this.counts[record] as number;
    if (this.windows[record] !== window) {
      this.windows[record] = window;
      count = 0;
    }
    const reset = (window + 1) * windowMs;
    if (count >= policy.limit) return { allowed: false, limit: policy.limit, remaining: 0, reset };
    count++;
    this.counts[record] = count;
    return { allowed: true, limit: policy.limit, remaining: policy.limit - count, reset };
  }

  private write(record: number, key: IndexedKey): void {
    if (packId(key.id, this.ids, record * ID_BYTES)) this.oddIds.delete(record);
    else this.oddIds.set(record, key.id);
    this.setExpiry(record, key.expiresAt);
    if (key.revokedAt === null) this.revoked.delete(record);
    else this.revoked.set(record, key.revokedAt);
    const policy = key.rateLimit;
    const addresses = key.allowedAddresses ?? null;
    const profileName = `${JSON.stringify(key.scopes)}|${JSON.stringify(key.permissions)}|${policy ? `${policy.limit}/${policy.windowSeconds}` : ""}|${addresses === null ? "" : JSON.stringify(addresses)}`;
    const profile = this.profileInterner.number(
      profileName,
      Object.freeze({
        scopes: Object.freeze([...key.scopes]),
        permissions: Object.freeze([...key.permissions]),
        rateLimit: policy ? Object.freeze({ limit: policy.limit, windowSeconds: policy.windowSeconds }) : null,
        allowlist: allowlistOf(addresses),
      }),
    );
    if (profile > NARROW_LIMIT && this.profiles instanceof Uint16Array) this.profiles = widen(this.profiles);
    this.profiles[record] = profile;
    const owner = key.ownerId === null ? 0 : this.ownerInterner.number(key.ownerId, key.ownerId);
    if (owner > NARROW_LIMIT && this.owners instanceof Uint16Array) this.owners = widen(this.owners);
    this.owners[record] = owner;
  }

  private setExpiry(record: number, expiresAt: number | null): void {
    if (expiresAt === null) {
      this.expirySeconds[record] = NEVER;
      this.expiryMillis[record] = 0;
      return;
    }
    const at = Math.max(0, Math.trunc(expiresAt));
    const seconds = Math.floor(at / 1000);
    this.expirySeconds[record] = seconds;
    this.expiryMillis[record] = at - seconds * 1000;
  }

  private isFree(record: number): boolean {
    // A freed record's digest is zeroed; a real SHA-256 digest starting with 128 zero bits
    // does not occur.
    const at = record * HELD_DIGEST_BYTES;
    for (let i = at; i < at + HELD_DIGEST_BYTES; i++) if (this.digests[i] !== 0) return false;
    return true;
  }

  private allocate(): number {
    const reused = this.free.pop();
    if (reused !== undefined) return reused;
    if (this.used === this.capacity) this.grow(Math.ceil(this.capacity * 1.5));
    return this.used++;
  }

  private home(record: number): number {
    return this.slotOf(this.digests.readUInt32LE(record * HELD_DIGEST_BYTES));
  }

  private next(slot: number): number {
    return slot + 1 === this.slotCount ? 0 : slot + 1;
  }

  private place(record: number): void {
    let slot = this.home(record);
    while (this.slots[slot] !== EMPTY) slot = this.next(slot);
    this.slots[slot] = record;
  }

  /** Backward-shift deletion: linear probing stays correct without tombstones. */
  private unplace(record: number): void {
    let slot = this.home(record);
    while (this.slots[slot] !== record) slot = this.next(slot);
    let hole = slot;
    let next = this.next(hole);
    for (;;) {
      const moving = this.slots[next] as number;
      if (moving === EMPTY) break;
      const home = this.home(moving);
      // Move `moving` into the hole unless its home lies cyclically in (hole, next].
      const between = hole <= next ? home > hole && home <= next : home > hole || home <= next;
      if (!between) {
        this.slots[hole] = moving;
        hole = next;
      }
      next = this.next(next);
    }
    this.slots[hole] = EMPTY;
    this.digests.fill(0, record * HELD_DIGEST_BYTES, (record + 1) * HELD_DIGEST_BYTES);
  }

  private grow(capacity: number): void {
    const copy = <T extends Uint16Array | Uint32Array>(from: T, make: (n: number) => T, fill?: number): T => {
      const to = make(capacity);
      if (fill !== undefined) to.fill(fill);
      to.set(from);
      return to;
    };
    const digests = Buffer.alloc(capacity * HELD_DIGEST_BYTES);
    this.digests.copy(digests);
    this.digests = digests;
    const ids = Buffer.alloc(capacity * ID_BYTES);
    this.ids.copy(ids);
    this.ids = ids;
    this.expirySeconds = copy(this.expirySeconds, (n) => new Uint32Array(n), NEVER);
    this.expiryMillis = copy(this.expiryMillis, (n) => new Uint16Array(n));
    this.profiles = copy(this.profiles, (n) =>
      this.profiles instanceof Uint16Array ? new Uint16Array(n) : new Uint32Array(n),
    );
    this.owners = copy(this.owners, (n) =>
      this.owners instanceof Uint16Array ? new Uint16Array(n) : new Uint32Array(n),
    );
    this.windows = copy(this.windows, (n) => new Uint32Array(n));
    this.counts = copy(this.counts, (n) => new Uint32Array(n));
    this.capacity = capacity;
    this.slotCount = Math.ceil(capacity / MAX_LOAD);
    this.scale = this.slotCount / 4294967296;
    this.slots = new Int32Array(this.slotCount).fill(EMPTY);
    for (let record = 0; record < this.used; record++) if (!this.isFree(record)) this.place(record);
  }
}

/** The same numbers in a 32-bit column, once one needs more than 16 bits. */
function widen(from: Uint16Array | Uint32Array): Uint32Array {
  const to = new Uint32Array(from.length);
  to.set(from);
  return to;
}
