import { timingSafeEqual } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.ts";
import type { ActorContext } from "../audit/context.ts";
import { auditEvent } from "../audit/context.ts";
import type { ChangeFeed } from "../lib/change-feed.ts";
import type { Clock } from "../lib/clock.ts";
import type { KeyRateLimiter, RateLimitOutcome } from "../ratelimit/key-rate-limiter.ts";
import type { ApiKeyRecord, RateLimitPolicy, Storage } from "../storage/types.ts";
import type { UsageRecorder } from "../usage/usage-recorder.ts";
import { CallerKeyCache } from "./caller-key-cache.ts";
import { digestKey, isWellFormedKey, keyHint } from "./key-format.ts";
import type { KeyPolicy } from "./key-policy.ts";
import { keyStatus } from "./key-status.ts";

export type VerifyFailureCode =
  | "MALFORMED"
  | "NOT_FOUND"
  | "EXPIRED"
  | "REVOKED"
  | "INSUFFICIENT_SCOPE"
  | "RATE_LIMITED";

export type VerifyResult =
  | {
      valid: true;
      keyId: string;
      ownerId: string | null;
      scopes: string[];
      expiresAt: number | null;
      ratelimit: RateLimitOutcome;
    }
  | { valid: false; code: VerifyFailureCode; ratelimit?: RateLimitOutcome };

export type Resolution =
  | { ok: true; record: ApiKeyRecord }
  | { ok: false; code: "MALFORMED" | "NOT_FOUND" | "EXPIRED" | "REVOKED"; record: ApiKeyRecord | null };

/**
 * Checks presented keys. The order is fixed and cheap-first: format and checksum (no
 * I/O), digest lookup, constant-time digest comparison, revocation, expiry, then the
 * rate limit, then scopes. Counting uses is buffered (UsageRecorder), so a verification
 * performs one indexed read and no write.
 */
export class KeyVerifier {
  private readonly storage: Storage;
  private readonly policy: KeyPolicy;
  private readonly clock: Clock;
  private readonly limiter: KeyRateLimiter;
  private readonly usage: UsageRecorder;
  private readonly audit: AuditLog;
  private readonly onOutcome: (outcome: "VALID" | VerifyFailureCode) => void;
  /** Only with a change feed: without one, nothing would tell the cache a key changed. */
  private readonly callers: CallerKeyCache | null;

  constructor(options: {
    storage: Storage;
    policy: KeyPolicy;
    clock: Clock;
    limiter: KeyRateLimiter;
    usage: UsageRecorder;
    audit: AuditLog;
    /** Observes every verdict (metrics). */
    onOutcome?: (outcome: "VALID" | VerifyFailureCode) => void;
    /** Key changes on any node; cached caller keys are dropped when they change. */
    changes?: ChangeFeed;
  }) {
    this.storage = options.storage;
    this.policy = options.policy;
    this.clock = options.clock;
    this.limiter = options.limiter;
    this.usage = options.usage;
    this.audit = options.audit;
    this.onOutcome = options.onOutcome ?? (() => {});
    const callers = options.changes ? new CallerKeyCache({ maxEntries: 1024, ttlMs: 1000 }) : null;
    this.callers = callers;
    options.changes?.subscribe((event) => {
      if (event.kind === "reset") callers?.clear();
      else if (event.topic === "key") callers?.forget(event.id);
    });
  }

  /** Finds the active key behind a presented secret, without counting or limiting. */
  async resolve(presented: unknown): Promise<Resolution> {
    if (!isWellFormedKey(presented, this.policy.prefix)) return { ok: false, code: "MALFORMED", record: null };
    const digest = digestKey(presented);
    const record = await this.storage.keys.findByDigest(digest);
    // The lookup is by digest already; the comparison is constant-time all the same, so
    // no future change to the lookup can turn it into a timing oracle.
    if (!record || !timingSafeEqual(record.digest, digest)) return { ok: false, code: "NOT_FOUND", record: null };
    return this.judge(record, this.clock());
  }

  /**
   * `resolve` for the key that authenticates a call to Gatehouse itself. Same answers,
   * but an active key is remembered (CallerKeyCache: dropped on change, re-read within a
   * second), so a resource server's own key is not read from storage on every request.
   */
  async resolveCaller(presented: unknown): Promise<Resolution> {
    if (!this.callers) return this.resolve(presented);
    if (!isWellFormedKey(presented, this.policy.prefix)) return { ok: false, code: "MALFORMED", record: null };
    const digest = digestKey(presented);
    const name = digest.toString("base64");
    const now = this.clock();
    const cached = this.callers.get(name, now);
    if (cached) {
      const resolution = this.judge(cached, now);
      if (!resolution.ok) this.callers.forget(cached.id);
      return resolution;
    }
    const record = await this.storage.keys.findByDigest(digest);
    if (!record || !timingSafeEqual(record.digest, digest)) return { ok: false, code: "NOT_FOUND", record: null };
    const resolution = this.judge(record, now);
    if (resolution.ok) this.callers.set(name, record, now);
    return resolution;
  }

  private judge(record: ApiKeyRecord, now: number): Resolution {
    const status = keyStatus(record, now);
    if (status === "revoked") return { ok: false, code: "REVOKED", record };
    if (status === "expired") return { ok: false, code: "EXPIRED", record };
    return { ok: true, record };
  }

  policyOf(record: ApiKeyRecord): RateLimitPolicy {
    return record.rateLimit ?? this.policy.defaultRateLimit;
  }

  async verify(presented: unknown, requiredScopes: readonly string[], context: ActorContext): Promise<VerifyResult> {
    const resolution = await this.resolve(presented);
    const now = this.clock();
    if (!resolution.ok) {
      if (resolution.record) this.usage.record(resolution.record.id, resolution.code, now);
      this.audit.record(
        auditEvent(context, now, {
          action: "key.verify",
          outcome: "failure",
          targetType: "key",
          targetId: resolution.record?.id ?? null,
          detail: {
            code: resolution.code,
            ...(resolution.code === "MALFORMED" ? {} : { hint: keyHint(presented as string) }),
          },
        }),
      );
      this.onOutcome(resolution.code);
      return { valid: false, code: resolution.code };
    }
    const record = resolution.record;
    const ratelimit = await this.limiter.consume(record.id, this.policyOf(record));
    let code: VerifyFailureCode | null = null;
    if (!ratelimit.allowed) code = "RATE_LIMITED";
    else if (!requiredScopes.every((scope) => record.scopes.includes(scope))) code = "INSUFFICIENT_SCOPE";
    this.usage.record(record.id, code ?? "VALID", now);
    if (code !== null) {
      this.audit.record(
        auditEvent(context, now, {
          action: "key.verify",
          outcome: "failure",
          targetType: "key",
          targetId: record.id,
          detail: { code, ...(code === "INSUFFICIENT_SCOPE" ? { required: requiredScopes } : {}) },
        }),
      );
      this.onOutcome(code);
      return { valid: false, code, ratelimit };
    }
    this.onOutcome("VALID");
    return {
      valid: true,
      keyId: record.id,
      ownerId: record.ownerId,
      scopes: record.scopes,
      expiresAt: record.expiresAt,
      ratelimit,
    };
  }
}
