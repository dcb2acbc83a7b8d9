import type { Logger } from "pino";
import type { Storage } from "../storage/types.ts";

const MINUTE = 60_000;

/**
 * Counts verifications per key, minute and outcome in memory and writes them in one
 * batch per interval, so the verification path never waits on a write. The price:
 * counts of the last interval are lost if the process is killed with SIGKILL (a
 * graceful stop flushes). A failed flush keeps its counts for the next one.
 */
export class UsageRecorder {
  private counts = new Map<string, number>();
  private lastUsed = new Map<string, number>();
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

  record(keyId: string, outcome: string, at: number): void {
    const bucket = at - (at % MINUTE);
    const name = `${keyId}\u0000${bucket}\u0000${outcome}`;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
    if (outcome === "VALID") this.lastUsed.set(keyId, at);
  }

  /** Writes everything counted so far. Concurrent calls share one write. */
  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.counts.size === 0 && this.lastUsed.size === 0) return Promise.resolve();
    const counts = this.counts;
    const lastUsed = this.lastUsed;
    this.counts = new Map();
    this.lastUsed = new Map();
    const increments = [...counts].map(([name, count]) => {
      const [keyId, bucket, outcome] = name.split("\u0000") as [string, string, string];
      return { keyId, bucket: Number(bucket), outcome, count };
    });
    this.flushing = (async () => {
      try {
        await this.storage.usage.add(increments);
        await this.storage.keys.touch(lastUsed);
      } catch (error) {
        this.log?.warn({ err: error }, "usage flush failed; will retry");
        for (const [name, count] of counts) this.counts.set(name, (this.counts.get(name) ?? 0) + count);
        for (const [id, at] of lastUsed) if ((this.lastUsed.get(id) ?? 0) < at) this.lastUsed.set(id, at);
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
