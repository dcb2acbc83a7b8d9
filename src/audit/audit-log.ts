import type { Logger } from "pino";
import type { AuditEventInput, Storage } from "../storage/types.ts";

/**
 * Writes audit events that have no transaction of their own (failed verifications,
 * failed sign-ins, leak reports) in small batches, off the request path. Admin actions do
 * not come here: their event is written in the same transaction as the change.
 */
export class AuditLog {
  private queue: AuditEventInput[] = [];
  private readonly storage: Storage;
  private readonly log: Logger | undefined;
  private readonly maxBatch: number;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(storage: Storage, options: { intervalMs: number; maxBatch?: number; log?: Logger }) {
    this.storage = storage;
    this.log = options.log;
    this.maxBatch = options.maxBatch ?? 500;
    if (options.intervalMs > 0) {
      this.timer = setInterval(() => void this.flush(), options.intervalMs);
      this.timer.unref();
    }
  }

  record(event: AuditEventInput): void {
    this.queue.push(event);
    if (this.queue.length >= this.maxBatch) void this.flush();
  }

  flush(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.flush());
    if (this.queue.length === 0) return Promise.resolve();
    const batch = this.queue;
    this.queue = [];
    this.flushing = (async () => {
      try {
        await this.storage.audit.append(batch);
      } catch (error) {
        this.log?.warn({ err: error, events: batch.length }, "audit flush failed; will retry");
        this.queue = batch.concat(this.queue);
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
