import type { Logger } from "pino";
import type { AuditEventInput, Storage } from "../storage/types.ts";

const MINUTE = 60_000;
/** Anonymous failures from one address written one by one per minute; the rest are counted. */
export const ANONYMOUS_FAILURES_PER_MINUTE = 60;
/** Addresses whose minute is tracked at once; past this the oldest is summed up early. */
const MAX_ADDRESSES = 10_000;

/** One address's anonymous failures in the current minute. */
interface AddressMinute {
  minute: number;
  written: number;
  /** Failures past the allowance, by action; null while there are none. */
  counted: Map<string, number> | null;
  lastAt: number;
}

/**
 * Writes audit events that have no transaction of their own (failed verifications,
 * failed sign-ins, leak reports) in small batches, off the request path. Admin actions do
 * not come here: their event is written in the same transaction as the change.
 *
 * Failures of anonymous requests cost their sender nothing (a made-up refresh token, a
 * junk bearer token, a key in a URL), so one address could otherwise fill the audit log,
 * which is kept for a year, and bury the events that matter. Per address and minute the
 * first ANONYMOUS_FAILURES_PER_MINUTE are written as they are (more than any brake lets
 * through: 30 failed key authentications block an address); the rest are counted, and one
 * `audit.suppressed` event per address and minute gives their number by action. Events of
 * authenticated callers (a resource server's failed verifications) are always written.
 */
export class AuditLog {
  private queue: AuditEventInput[] = [];
  private readonly storage: Storage;
  private readonly log: Logger | undefined;
  private readonly maxBatch: number;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly addresses = new Map<string, AddressMinute>();

  constructor(
    storage: Storage,
    options: { intervalMs: number; maxBatch?: number; log?: Logger; clock?: () => number },
  ) {
    this.storage = storage;
    this.log = options.log;
    this.maxBatch = options.maxBatch ?? 500;
    this.clock = options.clock ?? Date.now;
    if (options.intervalMs > 0) {
      this.timer = setInterval(() => void this.flush(), options.intervalMs);
      this.timer.unref();
    }
  }

  record(event: AuditEventInput): void {
    if (event.actor === "anonymous" && event.outcome === "failure" && event.ip !== null && !this.allowed(event)) {
      return;
    }
    this.enqueue(event);
  }

  private enqueue(event: AuditEventInput): void {
    this.queue.push(event);
    if (this.queue.length >= this.maxBatch) void this.flush();
  }

  /** Whether this anonymous failure is written; if not, it is counted for its address's summary. */
  private allowed(event: AuditEventInput): boolean {
    const ip = event.ip as string;
    const minute = event.at - (event.at % MINUTE);
    let state = this.addresses.get(ip);
    if (state !== undefined && state.minute !== minute) {
      this.summarise(ip, state);
      state = undefined;
    }
    if (state === undefined) {
      if (this.addresses.size >= MAX_ADDRESSES) {
        const [oldestIp, oldest] = this.addresses.entries().next().value as [string, AddressMinute];
        this.summarise(oldestIp, oldest);
      }
      state = { minute, written: 0, counted: null, lastAt: event.at };
      this.addresses.set(ip, state);
    }
    state.lastAt = Math.max(state.lastAt, event.at);
    if (state.written < ANONYMOUS_FAILURES_PER_MINUTE) {
      state.written++;
      return true;
    }
    state.counted ??= new Map();
    state.counted.set(event.action, (state.counted.get(event.action) ?? 0) + 1);
    return false;
  }

  /** Forgets an address's minute, writing the count of what was not written, if anything. */
  private summarise(ip: string, state: AddressMinute): void {
    this.addresses.delete(ip);
    if (state.counted === null) return;
    let events = 0;
    for (const count of state.counted.values()) events += count;
    this.enqueue({
      at: state.lastAt,
      actor: "anonymous",
      action: "audit.suppressed",
      outcome: "failure",
      targetType: null,
      targetId: null,
      ip,
      userAgent: null,
      requestId: null,
      detail: {
        minute: new Date(state.minute).toISOString(),
        events,
        byAction: Object.fromEntries(state.counted),
        written: state.written,
      },
    });
  }

  /** Sums up every address whose minute has ended (all of them when stopping). */
  private closeMinutes(all: boolean): void {
    if (this.addresses.size === 0) return;
    const now = this.clock();
    const current = now - (now % MINUTE);
    for (const [ip, state] of this.addresses) if (all || state.minute < current) this.summarise(ip, state);
  }

  flush(): Promise<void> {
    this.closeMinutes(false);
    return this.write();
  }

  private write(): Promise<void> {
    if (this.flushing) return this.flushing.then(() => this.write());
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
    this.closeMinutes(true);
    await this.write();
  }
}
