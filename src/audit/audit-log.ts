import type { Logger } from "pino";
import { addressGroup } from "../lib/address-group.ts";
import type { AuditEventInput, Storage } from "../storage/types.ts";

const MINUTE = 60_000;
/** Anonymous failures of one action from one sender written one by one per minute; the rest are counted. */
export const ANONYMOUS_FAILURES_PER_MINUTE = 60;
/** Hints of credentials kept in a summary, at most (the first distinct ones). */
const HINTS_KEPT = 10;
/** Senders and actions whose minute is tracked at once; past this the oldest is summed up early. */
const MAX_TRACKED = 10_000;

/** One sender's anonymous failures of one action in the current minute. */
interface SenderMinute {
  sender: string;
  action: string;
  minute: number;
  written: number;
  counted: number;
  /** Hints of the credentials in the failures counted (not written), at most HINTS_KEPT. */
  hints: Set<string> | null;
  lastAt: number;
}

/**
 * Writes audit events that have no transaction of their own (failed verifications,
 * failed sign-ins, leak reports) in small batches, off the request path. Admin actions do
 * not come here: their event is written in the same transaction as the change.
 *
 * Failures of anonymous requests that name nothing Gatehouse holds cost their sender
 * nothing (a made-up refresh token, a junk bearer token, a key in a URL), so one sender
 * could otherwise fill the audit log, which is kept for a year. Per sender (an IPv4
 * address, or an IPv6 /64), action and minute, the first ANONYMOUS_FAILURES_PER_MINUTE
 * such events are written as they are; the rest are counted, and one `audit.suppressed`
 * event per sender, action and minute gives their number and the first few credential
 * hints among them. Never held back: events that name a key, user or sign-in Gatehouse
 * holds (`targetId`: a revoked key tried, a victim's old refresh token), and events of
 * authenticated callers (a resource server's failed verifications).
 */
export class AuditLog {
  private queue: AuditEventInput[] = [];
  private readonly storage: Storage;
  private readonly log: Logger | undefined;
  private readonly maxBatch: number;
  private readonly clock: () => number;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private readonly tracked = new Map<string, SenderMinute>();

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
    if (
      event.actor === "anonymous" &&
      event.outcome === "failure" &&
      event.targetId === null &&
      event.ip !== null &&
      !this.allowed(event)
    ) {
      return;
    }
    this.enqueue(event);
  }

  private enqueue(event: AuditEventInput): void {
    this.queue.push(event);
    if (this.queue.length >= this.maxBatch) void this.flush();
  }

  /** Whether this anonymous failure is written; if not, it is counted for its sender's summary. */
  private allowed(event: AuditEventInput): boolean {
    const sender = addressGroup(event.ip as string);
    const name = `${sender} ${event.action}`;
    const minute = event.at - (event.at % MINUTE);
    let state = this.tracked.get(name);
    if (state !== undefined && state.minute !== minute) {
      this.summarise(name, state);
      state = undefined;
    }
    if (state === undefined) {
      if (this.tracked.size >= MAX_TRACKED) {
        const [oldestName, oldest] = this.tracked.entries().next().value as [string, SenderMinute];
        this.summarise(oldestName, oldest);
      }
      state = { sender, action: event.action, minute, written: 0, counted: 0, hints: null, lastAt: event.at };
      this.tracked.set(name, state);
    }
    state.lastAt = Math.max(state.lastAt, event.at);
    if (state.written < ANONYMOUS_FAILURES_PER_MINUTE) {
      state.written++;
      return true;
    }
    state.counted++;
    const hint = event.detail?.hint;
    if (typeof hint === "string" && (state.hints?.size ?? 0) < HINTS_KEPT) {
      state.hints ??= new Set();
      state.hints.add(hint);
    }
    return false;
  }

  /** Forgets a sender's minute of one action, writing the count of what was not written, if anything. */
  private summarise(name: string, state: SenderMinute): void {
    this.tracked.delete(name);
    if (state.counted === 0) return;
    this.enqueue({
      at: state.lastAt,
      actor: "anonymous",
      action: "audit.suppressed",
      outcome: "failure",
      targetType: null,
      targetId: null,
      ip: state.sender,
      userAgent: null,
      requestId: null,
      detail: {
        action: state.action,
        minute: new Date(state.minute).toISOString(),
        events: state.counted,
        written: state.written,
        ...(state.hints ? { hints: [...state.hints] } : {}),
      },
    });
  }

  /** Sums up every sender's minute that has ended (all of them when stopping). */
  private closeMinutes(all: boolean): void {
    if (this.tracked.size === 0) return;
    const now = this.clock();
    const current = now - (now % MINUTE);
    for (const [name, state] of this.tracked) if (all || state.minute < current) this.summarise(name, state);
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
