import type { Logger } from "pino";
import type { Storage, UsageIncrement } from "../storage/types.ts";
import { ValidUseTable } from "./valid-use-table.ts";

const MINUTE = 60_000;

/** One key's uses in one minute: valid uses, the other outcomes, and the last valid use. */
interface Tally {
  bucket: number;
  valid: number;
  lastUsed: number;
  others: Map<string, number> | null;
}

const VALID = "VALID";
/** Valid-use rows per storage write. */
const FLUSH_CHUNK = 1000;

/**
 * The increments in key order (consecutive rows land on the same pages of the usage
 * table's index), with any two for the same key, minute and outcome made one: counts a
 * failed flush gave back can meet newer counts of the same minute, and one PostgreSQL
 * statement may not update a row twice.
 */
function coalesce(increments: UsageIncrement[]): UsageIncrement[] {
  increments.sort((a, b) =>
    a.keyId !== b.keyId
      ? a.keyId < b.keyId
        ? -1
        : 1
      : a.bucket !== b.bucket
        ? a.bucket - b.bucket
        : a.outcome < b.outcome
          ? -1
          : a.outcome > b.outcome
            ? 1
            : 0,
  );
  const merged: UsageIncrement[] = [];
  for (const increment of increments) {
    const last = merged.at(-1);
    if (
      last &&
      last.keyId === increment.keyId &&
      last.bucket === increment.bucket &&
      last.outcome === increment.outcome
    ) {
      const lastAt = Math.max(last.lastAt ?? 0, increment.lastAt ?? 0);
      merged[merged.length - 1] = { ...last, count: last.count + increment.count, lastAt: lastAt > 0 ? lastAt : null };
    } else {
      merged.push(increment);
    }
  }
  return merged;
}

/** A tally as the rows it adds to: its valid uses (with the last), then each other outcome. */
function pushIncrements(into: UsageIncrement[], keyId: string, tally: Tally): void {
  if (tally.valid > 0)
    into.push({ keyId, bucket: tally.bucket, outcome: VALID, count: tally.valid, lastAt: tally.lastUsed });
  if (tally.others === null) return;
  for (const [outcome, count] of tally.others) into.push({ keyId, bucket: tally.bucket, outcome, count, lastAt: null });
}

function tallyOf(table: ValidUseTable, entry: number, bucket: number): [string, Tally] {
  return [table.keyId(entry), { bucket, valid: table.count(entry), lastUsed: table.lastUsed(entry), others: null }];
}

/**
 * Counts verifications per key, minute and outcome in memory and writes them in one
 * batch per interval, so the verification path never waits on a write. The price:
 * counts of the last interval are lost if the process is killed with SIGKILL (a
 * graceful stop flushes). A failed flush keeps its counts for the next one.
 */
export class UsageRecorder {
  /**
   * Valid uses of keys with Gatehouse's own id form, in the minute `validBucket`: nearly
   * every verification, counted without allocating (valid-use-table.ts).
   */
  private valid = new ValidUseTable();
  /** The table being written by a flush, cleared when it ends; then the next flush's spare. */
  private spare = new ValidUseTable();
  private validBucket = 0;
  /** Everything else per key (failures, ids of another form), in the minute being counted. */
  private tallies = new Map<string, Tally>();
  /** Earlier minutes, and counts a failed flush gave back. */
  private closed: Array<[string, Tally]> = [];
  private readonly storage: Storage;
  private readonly log: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  /** The one flush that callers arriving during a flush wait for, shared by all of them. */
  private followUp: Promise<void> | undefined;
  /** Flushes started so far: a read of storage that saw this number change may have seen some counts twice. */
  private flushesStarted = 0;

  constructor(storage: Storage, options: { intervalMs: number; log?: Logger }) {
    this.storage = storage;
    this.log = options.log;
    if (options.intervalMs > 0) {
      this.timer = setInterval(() => void this.flush(), options.intervalMs);
      this.timer.unref();
    }
  }

  /**
   * On every verification: no allocation for a valid use, one map lookup otherwise.
   * `packed`: the key's id already packed (keys/packed-id.ts), when the caller has it (the
   * key index does), which saves parsing `keyId` back into those bytes.
   */
  record(keyId: string, outcome: string, at: number, packed: Buffer | null = null): void {
    const bucket = at - (at % MINUTE);
    if (outcome === VALID) {
      if (bucket !== this.validBucket) this.closeValidMinute(bucket);
      if (packed !== null) {
        this.valid.addPacked(packed, at);
        return;
      }
      if (this.valid.add(keyId, at)) return;
    }
    let tally = this.tallies.get(keyId);
    if (tally === undefined || tally.bucket !== bucket) {
      if (tally !== undefined) this.closed.push([keyId, tally]);
      tally = { bucket, valid: 0, lastUsed: 0, others: null };
      this.tallies.set(keyId, tally);
    }
    if (outcome === VALID) {
      tally.valid++;
      if (at > tally.lastUsed) tally.lastUsed = at;
    } else {
      tally.others ??= new Map();
      tally.others.set(outcome, (tally.others.get(outcome) ?? 0) + 1);
    }
  }

  /** A new minute: the table's counts join the closed ones, as tallies of their minute. */
  private closeValidMinute(bucket: number): void {
    const table = this.valid;
    for (let entry = 0; entry < table.length; entry++) this.closed.push(tallyOf(table, entry, this.validBucket));
    table.clear();
    this.validBucket = bucket;
  }

  /**
   * The latest valid use of `keyId` counted on this node and not yet written, or null,
   * so a key read can show a current `lastUsedAt` without writing the buffer early (a
   * read that flushed would let anyone polling key reads set the flush interval). Not
   * looked at: uses of a minute that has closed since the last flush, and counts a failed
   * flush gave back (a later use of the same key would be in the current minute, so only
   * a key unused since then shows its last written use, until the next write succeeds);
   * and, during a flush, the other tallies it is writing (ids not of Gatehouse's form).
   */
  lastUseNotWritten(keyId: string): number | null {
    let latest = this.valid.lastUseOf(keyId);
    // During a flush, `spare` is the table being written.
    if (this.flushing) latest = Math.max(latest, this.spare.lastUseOf(keyId));
    const tally = this.tallies.get(keyId);
    if (tally !== undefined) latest = Math.max(latest, tally.lastUsed);
    return latest > 0 ? latest : null;
  }

  /**
   * `read` (a read of storage) and the counts of `keyId` this node holds and has not
   * written, such that every count is in exactly one of the two: the read runs while no
   * flush is writing, and is repeated if one started before it ended. So a read of usage
   * never writes (a read that flushed would let anyone polling it set the flush rate)
   * and still shows every use this node counted before it. Counts other nodes hold are
   * not seen until they write them (GATEHOUSE_USAGE_FLUSH_MS).
   */
  async readWithUnwritten<T>(
    keyId: string,
    read: () => Promise<T>,
  ): Promise<{ stored: T; unwritten: UsageIncrement[] }> {
    // A flush takes milliseconds every few seconds: a second attempt is rare, and after a
    // third, flushes are back to back, so writing first is the way to be exact.
    for (let attempt = 0; attempt < 3; attempt++) {
      while (this.flushing) await this.flushing;
      const started = this.flushesStarted;
      const stored = await read();
      if (this.flushing === undefined && this.flushesStarted === started) {
        return { stored, unwritten: this.unwrittenOf(keyId) };
      }
    }
    // Written first, then read once more: what a failed flush gave back, and what was
    // counted meanwhile, is still in memory, and is added unless yet another flush began.
    await this.flush();
    const started = this.flushesStarted;
    const stored = await read();
    const settled = this.flushing === undefined && this.flushesStarted === started;
    return { stored, unwritten: settled ? this.unwrittenOf(keyId) : [] };
  }

  /** The counts of `keyId` held in memory (outside a flush: during one, some are being written). */
  private unwrittenOf(keyId: string): UsageIncrement[] {
    const increments: UsageIncrement[] = [];
    const entry = this.valid.find(keyId);
    if (entry >= 0) {
      increments.push({
        keyId,
        bucket: this.validBucket,
        outcome: VALID,
        count: this.valid.count(entry),
        lastAt: this.valid.lastUsed(entry),
      });
    }
    // Closed minutes wait for the next flush (a few seconds): a scan, on a read path only.
    for (const [id, tally] of this.closed) if (id === keyId) pushIncrements(increments, keyId, tally);
    const tally = this.tallies.get(keyId);
    if (tally !== undefined) pushIncrements(increments, keyId, tally);
    return coalesce(increments);
  }

  /**
   * Writes everything counted so far. A call during a flush waits for it and then for
   * one more, which every such call shares: readers arriving together cost one write,
   * not one each.
   */
  flush(): Promise<void> {
    if (this.flushing) {
      this.followUp ??= this.flushing.then(() => {
        this.followUp = undefined;
        return this.flush();
      });
      return this.followUp;
    }
    if (this.tallies.size === 0 && this.closed.length === 0 && this.valid.length === 0) return Promise.resolve();
    // Counting goes on into the spare table while this one is written.
    const table = this.valid;
    this.valid = this.spare;
    this.spare = table;
    const bucket = this.validBucket;
    const taken: Array<[string, Tally]> = [...this.closed, ...this.tallies];
    this.tallies = new Map();
    this.closed = [];
    const others: UsageIncrement[] = [];
    for (const [keyId, tally] of taken) pushIncrements(others, keyId, tally);
    const merged = coalesce(others);
    const order = table.inIdOrder();
    this.flushesStarted++;
    this.flushing = (async () => {
      let written = 0;
      let othersWritten = false;
      try {
        // One write per key and minute: the last use travels with the counts.
        if (merged.length > 0) await this.storage.usage.add(merged);
        othersWritten = true;
        // The valid uses in chunks, each built just before it is written: built all at
        // once (10,000 keys a second with a million in use), they lived long enough for
        // V8 to promote them, and the old generation grew by megabytes a second.
        while (written < order.length) {
          const end = Math.min(order.length, written + FLUSH_CHUNK);
          const chunk: UsageIncrement[] = [];
          for (let i = written; i < end; i++) {
            const entry = order[i] as number;
            chunk.push({
              keyId: table.keyId(entry),
              bucket,
              outcome: VALID,
              count: table.count(entry),
              lastAt: table.lastUsed(entry),
            });
          }
          await this.storage.usage.add(chunk);
          written = end;
        }
      } catch (error) {
        this.log?.warn({ err: error }, "usage flush failed; will retry");
        // What was not written is counted again with the next flush, in its own minute.
        // A loop, not push(...taken): a million keys would be a million arguments.
        if (!othersWritten) for (const pair of taken) this.closed.push(pair);
        for (let i = written; i < order.length; i++) this.closed.push(tallyOf(table, order[i] as number, bucket));
      } finally {
        table.clear();
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  /**
   * Writes what is held, for the last time. False when some of it could not be written
   * (storage unreachable at shutdown): those counts are lost with the process, and an
   * error line says how many keys they were, rather than the flush's "will retry".
   */
  async stop(): Promise<boolean> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
    const lost = new Set([...this.closed.map(([keyId]) => keyId), ...this.tallies.keys()]);
    for (let entry = 0; entry < this.valid.length; entry++) lost.add(this.valid.keyId(entry));
    const keys = lost.size;
    if (keys === 0) return true;
    this.log?.error({ keys }, "usage counts could not be written at shutdown; they are lost");
    return false;
  }
}
