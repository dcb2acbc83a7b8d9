import { setImmediate as yieldToRequests } from "node:timers/promises";
import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import type { PurgeTarget, Storage } from "../storage/types.ts";

const DAY = 86_400_000;

export interface RetentionPolicy {
  /** Keep revoked or expired keys this long after they ended (audit and support). */
  endedKeysDays: number;
  usageDays: number;
  /** Per-minute usage this long; older minutes are summed per hour (kept `usageDays`). */
  usageMinuteDays: number;
  auditDays: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = {
  endedKeysDays: 30,
  usageDays: 90,
  usageMinuteDays: 7,
  auditDays: 365,
};

/** What one pass did: rows deleted per target, and minute rows of usage summed per hour. */
export type PassResult = Record<PurgeTarget, number> & { usageRolledUp: number };

/**
 * Purges what has outlived its retention, in batches of `batchSize` rows, yielding to
 * requests between batches, so tables stay bounded without long locks or long pauses.
 * Safe on several nodes at once (deletes are idempotent; PostgreSQL skips locked rows).
 */
export class Housekeeper {
  private readonly storage: Storage;
  private readonly clock: Clock;
  private readonly credentialGraceMs: number;
  private readonly retention: RetentionPolicy;
  private readonly batchSize: number;
  private readonly log: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<PassResult> | undefined;
  private stopped = false;

  constructor(options: {
    storage: Storage;
    clock: Clock;
    retention?: RetentionPolicy;
    batchSize?: number;
    log?: Logger;
    /**
     * How long spent refresh tokens and denylist entries outlive their end: access tokens
     * signed near a family's end, or denied at logout, are judged by these rows until they
     * expire (their lifetime past the family's end, and clock tolerance). Default 20 min.
     */
    credentialGraceMs?: number;
  }) {
    this.storage = options.storage;
    this.clock = options.clock;
    this.credentialGraceMs = options.credentialGraceMs ?? 20 * 60_000;
    this.retention = options.retention ?? DEFAULT_RETENTION;
    this.batchSize = options.batchSize ?? 1000;
    this.log = options.log;
  }

  /** Runs every `intervalMs` (first run after one interval). */
  start(intervalMs: number): void {
    this.timer = setInterval(() => {
      this.runOnce().catch((error) => this.log?.warn({ err: error }, "housekeeping failed; will retry"));
    }, intervalMs);
    this.timer.unref();
  }

  /** One full pass; concurrent calls share it. */
  runOnce(): Promise<PassResult> {
    this.running ??= this.pass().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async pass(): Promise<PassResult> {
    const now = this.clock();
    const cutoffs: Record<PurgeTarget, number> = {
      ended_keys: now - this.retention.endedKeysDays * DAY,
      usage: now - this.retention.usageDays * DAY,
      usage_hours: now - this.retention.usageDays * DAY,
      audit: now - this.retention.auditDays * DAY,
      // A family's rows say whether its access tokens were revoked, and a denylist entry
      // that its token is: both are read until the last such token expires (an access
      // token signed just before its family's end outlives it), so they go a grace later.
      refresh_tokens: now - this.credentialGraceMs,
      legacy_token_digests: now,
      denied_access_tokens: now - this.credentialGraceMs,
      sessions: now,
    };
    const deleted: PassResult = {
      ended_keys: 0,
      usage: 0,
      usage_hours: 0,
      audit: 0,
      refresh_tokens: 0,
      legacy_token_digests: 0,
      denied_access_tokens: 0,
      sessions: 0,
      usageRolledUp: 0,
    };
    const minuteCutoff = now - Math.min(this.retention.usageMinuteDays, this.retention.usageDays) * DAY;
    const purge = async (target: PurgeTarget) => {
      for (;;) {
        if (this.stopped) return;
        const n = await this.storage.housekeeping.purge(target, cutoffs[target], this.batchSize);
        deleted[target] += n;
        if (n < this.batchSize) return;
        await yieldToRequests();
      }
    };
    // Spent credentials first: at a high rotation rate they are the most rows an hour, and
    // the usage roll-up after an upgrade can take hours. The legacy digests follow the
    // tokens they belonged to.
    for (const target of ["refresh_tokens", "legacy_token_digests", "denied_access_tokens", "sessions"] as const) {
      // One target failing (a statement timeout on a large table) must not stop the rest
      // of the pass: retention of usage and the audit log goes on.
      await purge(target).catch((error) => this.log?.warn({ err: error, target }, "housekeeping of a target failed"));
    }
    // Of usage, minutes past the usage retention go first (summing them into hours only to delete
    // those would be wasted work, most of all on the first pass after an upgrade); then
    // the minutes past the minute retention become hours.
    await purge("usage");
    for (;;) {
      if (this.stopped) return deleted;
      const n = await this.storage.usage.rollUp(minuteCutoff, this.batchSize);
      deleted.usageRolledUp += n;
      if (n < this.batchSize) break;
      await yieldToRequests();
    }
    for (const target of ["ended_keys", "usage_hours", "audit"] as const) await purge(target);
    if (this.stopped) return deleted;
    // The key change log only has to outlive a node's polling (a fraction of a second);
    // a day leaves room for a paused process, and one that fell further behind reloads.
    await this.storage.keys.pruneChanges(now - DAY);
    if (Object.values(deleted).some((n) => n > 0)) this.log?.info({ deleted }, "housekeeping purged expired rows");
    return deleted;
  }

  /**
   * No more passes; resolves once a pass in flight has finished its current batch. The
   * caller closes storage next, and a pass still querying then failed with "Cannot use
   * a pool after calling end" on PostgreSQL.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running?.catch(() => {});
  }
}
