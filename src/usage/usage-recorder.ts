import type { Logger } from "pino";
import type { Storage, UsageIncrement } from "../storage/types.ts";

const MINUTE = 60_000;

/**
 * One key's uses in one minute: valid uses, the other outcomes, and the last valid use.
 * Valid uses get a plain field: with a million keys in use, a tally per key and second is
 * made and dropped for nearly every request, and a Map each (~200 bytes) made most of the
 * garbage the verification path left for the old generation.
 */
interface Tally {
  bucket: number;
  valid: number;
  lastUsed: number;
  others: Map<string, number> | null;
}

const VALID = "VALID";

/**
 * Counts verifications per key, minute and outcome in memory and writes them in one
 * batch per interval, so the verification path never waits on a write. The price:
 * counts of the last interval are lost if the process is killed with SIGKILL (a
 * graceful stop flushes). A failed flush keeps its counts for the next one.
 */
export class UsageRecorder {
  /** Per key, the minute being counted; earlier minutes wait in `closed`. */
  private tallies = new Map<string, Tally>();
  private closed: Array<[string, Tally]> = [];
  private readonly storage: Storage;
  private readonly log: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(storage: Storage, options: { intervalMs: number; log?: Logger }) {
    this.storage = storage;
    this.log = options.log;
    if (options.intervalMs > 0) {
      this.timer = setInterval(() => void this.flush(), options.intervalMs);
      this.timer.unref();
    }
  }

  /** On every verification: one map lookup, no string built. */
  record(keyId: string, outcome: string, at: number): void {
    const bucket = at - (at % MINUTE);
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

  /** Writes everything counted so far. Concurrent calls share one write. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.tallies.size === 0 && this.closed.length === 0) return Promise.resolve();
    const taken: Array<[string, Tally]> = [...this.closed, ...this.tallies];
    this.tallies = new Map();
    this.closed = [];
    const increments: UsageIncrement[] = [];
    for (const [keyId, tally] of taken) {
      const { bucket } = tally;
      if (tally.valid > 0)
        increments.push({ keyId, bucket, outcome: VALID, count: tally.valid, lastAt: tally.lastUsed });
      if (tally.others === null) continue;
      for (const [outcome, count] of tally.others) increments.push({ keyId, bucket, outcome, count, lastAt: null });
    }
    // In key order: consecutive rows land on the same pages of the usage table's index.
    increments.sort((a, b) => (a.keyId < b.keyId ? -1 : a.keyId > b.keyId ? 1 : a.bucket - b.bucket));
    this.flushing = (async () => {
      try {
        // One write per key and minute: the last use travels with the counts.
        await this.storage.usage.add(increments);
      } catch (error) {
        this.log?.warn({ err: error }, "usage flush failed; will retry");
        // Counted again with the next flush; the buckets keep their minutes.
        this.closed.push(...taken);
      } finally {
        this.flushing = undefined;
      }
    })();
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.flush();
  }
}
