import type { Logger } from "pino";
import { StorageUnavailableError } from "../errors/gatehouse-error.ts";
import { addressGroup } from "../lib/address-group.ts";
import type { AuditEventInput, Storage } from "../storage/types.ts";

const MINUTE = 60_000;
/** Anonymous failures of one action from one sender written one by one per minute; the rest are counted. */
export const ANONYMOUS_FAILURES_PER_MINUTE = 60;
/** Hints of credentials kept in a summary, at most (the first distinct ones). */
const HINTS_KEPT = 10;
/** Senders and actions whose minute is tracked at once; past this the oldest is summed up early. */
const MAX_TRACKED = 10_000;
/**
 * Events held while storage is down, at most. Past it new events are dropped and counted
 * in an error log line, rather than the queue growing until the process runs out of memory.
 */
export const MAX_QUEUED = 100_000;

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
 *
 * A batch storage cannot write goes back to the queue whole (append is atomic, so
 * nothing of it was written), unless storage refused its data (text PostgreSQL cannot
 * hold, say: `refusesData`): then the batch is written again event by event, and an event
 * refused on its own is dropped with an error log line, so one bad event cannot hold back
 * every later one.
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
  private readonly maxQueued: number;
  /** Events dropped because the queue was full, since the last log line said so. */
  private dropped = 0;

  constructor(
    storage: Storage,
    options: { intervalMs: number; maxBatch?: number; maxQueued?: number; log?: Logger; clock?: () => number },
  ) {
    this.storage = storage;
    this.log = options.log;
    this.maxBatch = options.maxBatch ?? 500;
    this.maxQueued = options.maxQueued ?? MAX_QUEUED;
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
    if (this.queue.length >= this.maxQueued) {
      this.dropped++;
      return;
    }
    this.queue.push(event);
    // One write at a time: while one is in flight (storage slow or down) the timer takes
    // the next, instead of every event past the batch size chaining another attempt.
    if (this.queue.length >= this.maxBatch && !this.flushing) void this.flush();
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
    if (this.dropped > 0) {
      this.log?.error({ dropped: this.dropped, queued: this.queue.length }, "audit queue full; events dropped");
      this.dropped = 0;
    }
    if (this.queue.length === 0) return Promise.resolve();
    const batch = this.queue;
    this.queue = [];
    this.flushing = this.writeBatch(batch).finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async writeBatch(batch: AuditEventInput[]): Promise<void> {
    try {
      await this.storage.audit.append(batch);
      return;
    } catch (error) {
      if (!refusesData(error)) {
        this.requeue(batch, error);
        return;
      }
    }
    for (const [i, event] of batch.entries()) {
      try {
        await this.storage.audit.append([event]);
      } catch (error) {
        if (!refusesData(error)) {
          this.requeue(batch.slice(i), error);
          return;
        }
        // The action and the database's reason, never the event itself: not its detail, nor
        // the error's context (PostgreSQL's `where` quotes the JSON it could not read).
        this.log?.error({ action: event.action, reason: refusal(error) }, "audit event refused by storage; dropped");
      }
    }
  }

  /** Puts events that could not be written back at the head of the queue, within its bound. */
  private requeue(events: AuditEventInput[], error: unknown): void {
    this.log?.warn({ err: error, events: events.length }, "audit flush failed; will retry");
    const queue = events.concat(this.queue);
    if (queue.length > this.maxQueued) {
      this.dropped += queue.length - this.maxQueued;
      queue.length = this.maxQueued;
    }
    this.queue = queue;
  }

  /**
   * Writes what is queued, for the last time. False when some of it could not be written
   * (storage unreachable at shutdown): those events are lost with the process, and an
   * error line says how many.
   */
  async stop(): Promise<boolean> {
    if (this.timer) clearInterval(this.timer);
    this.closeMinutes(true);
    await this.write();
    // With those the full queue turned away and no line has counted yet.
    const lost = this.queue.length + this.dropped;
    if (lost === 0) return true;
    this.log?.error({ events: lost }, "audit events could not be written at shutdown; they are lost");
    return false;
  }
}

/**
 * Whether storage refused what it was given, rather than failed to take anything: the
 * one case where writing the same events again cannot help. PostgreSQL's data exceptions
 * and constraint violations (SQLSTATE classes 22 and 23: text it cannot hold, a value out
 * of range), SQLite's TOOBIG, CONSTRAINT, MISMATCH and RANGE. Anything else (the store
 * unavailable, busy, full, a statement timeout) keeps the events for the next flush: a
 * store that is down must not cost the audit trail.
 *
 * Also JavaScript's own TypeError and RangeError with no code: an event the driver could
 * not even encode (JSON.stringify of a BigInt or a cycle in its detail) fails the same
 * way however often it is tried. Driver failures (timeouts, lost connections) are plain
 * Errors or carry a code, and stay queued.
 */
function refusesData(error: unknown): boolean {
  if (error instanceof StorageUnavailableError || !(error instanceof Error)) return false;
  if ((error instanceof TypeError || error instanceof RangeError) && !("code" in error) && !("errcode" in error)) {
    return true;
  }
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  // node:sqlite refusing to bind a value (a BigInt too large for 64 bits, say).
  if (typeof code === "string" && code.startsWith("ERR_INVALID_ARG_")) return true;
  if (typeof errcode === "number") return [18, 19, 20, 25].includes(errcode & 0xff);
  return typeof code === "string" && /^2[23][0-9A-Z]{3}$/.test(code);
}

/** Why storage refused an event: the error's code and message only. */
function refusal(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? `${code}: ${error.message}` : error.message;
}
