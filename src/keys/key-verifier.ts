import { timingSafeEqual } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.ts";
import type { ActorContext } from "../audit/context.ts";
import { auditEvent } from "../audit/context.ts";
import type { ChangeFeed } from "../lib/change-feed.ts";
import type { Clock } from "../lib/clock.ts";
import type { KeyRateLimiter, RateLimitOutcome } from "../ratelimit/key-rate-limiter.ts";
import type { ApiKeyRecord, RateLimitPolicy, Storage } from "../storage/types.ts";
import type { UsageRecorder } from "../usage/usage-recorder.ts";
import type { ActiveKeys } from "./active-keys.ts";
import { allowlistOf } from "./address-allowlist.ts";
import { CallerKeyCache } from "./caller-key-cache.ts";
import { digestKey, digestKeyInto, isWellFormedKey, keyHint, keyLength } from "./key-format.ts";
import type { KeyPolicy } from "./key-policy.ts";
import { keyStatus } from "./key-status.ts";
import { PACKED_ID_BYTES } from "./packed-id.ts";

const ADMITTED_FOR_MS = 10 * 60_000;
const ADMITTED_MAX = 10_000;

export type VerifyFailureCode =
  | "MALFORMED"
  | "NOT_FOUND"
  | "EXPIRED"
  | "REVOKED"
  | "ADDRESS_NOT_ALLOWED"
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
 * I/O), digest lookup, constant-time digest comparison, revocation, expiry, the address
 * it is used from (before the rate limit: a leaked key tried from elsewhere spends none
 * of its owner's quota), then the rate limit, then scopes. Counting uses is buffered (UsageRecorder), so a verification
 * writes nothing.
 *
 * With an ActiveKeys index (the embedded default) and node-local rate limits, a
 * verification of an active key reads no storage and completes synchronously: `verify`
 * then returns the result itself rather than a promise, which saves the HTTP route a
 * trip through the microtask queue. Keys missing from the index (unknown, revoked,
 * expired) are looked up in storage, which says which.
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
  private readonly changes: ChangeFeed | null;
  /** Digests of caller keys let in lately, oldest first (see `admittedRecently`). */
  private readonly admitted = new Map<string, number>();
  private readonly active: ActiveKeys | null;
  /** The digest of the key being looked up in the index, rewritten by every lookup. */
  private readonly digest = Buffer.alloc(32);
  /** The packed id of the key being counted, rewritten by every count (see `packedIdOf`). */
  private readonly packedId = Buffer.alloc(PACKED_ID_BYTES);

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
    /** Every active key in memory; when ready, verification of an active key reads no storage. */
    active?: ActiveKeys;
  }) {
    this.storage = options.storage;
    this.policy = options.policy;
    this.clock = options.clock;
    this.limiter = options.limiter;
    this.usage = options.usage;
    this.audit = options.audit;
    this.onOutcome = options.onOutcome ?? (() => {});
    this.active = options.active ?? null;
    // Changes from other processes (the CLI on the same SQLite file) reach no change feed,
    // but they do reach the index: the caller cache follows it rather than its TTL.
    this.active?.onApplied((keyId) => this.callers?.forget(keyId));
    const callers = options.changes ? new CallerKeyCache({ maxEntries: 1024, ttlMs: 1000 }) : null;
    this.callers = callers;
    this.changes = options.changes ?? null;
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
    const generation = this.callers.generation;
    const record = await this.storage.keys.findByDigest(digest);
    if (!record || !timingSafeEqual(record.digest, digest)) return { ok: false, code: "NOT_FOUND", record: null };
    const resolution = this.judge(record, now);
    if (resolution.ok) {
      // Cached only while the feed would say the key changed (with Redis away, a key
      // revoked on another node was accepted here until the entry expired), and only if no
      // change was heard while this read was in flight.
      if (this.changes?.hearing() !== false && this.callers.generation === generation)
        this.callers.set(name, record, now);
      this.admitted.delete(name);
      this.admitted.set(name, now);
      if (this.admitted.size > ADMITTED_MAX) this.admitted.delete(this.admitted.keys().next().value as string);
    }
    return resolution;
  }

  /**
   * True when this presented key authenticated a call on this node in the last ten
   * minutes (it is then worth a lookup even from an address blocked for failures; the
   * lookup still checks that it is active). Only digests are kept, at most 10,000.
   */
  admittedRecently(presented: string): boolean {
    if (presented.length !== keyLength(this.policy.prefix)) return false;
    const name = digestKey(presented).toString("base64");
    const at = this.admitted.get(name);
    return at !== undefined && this.clock() - at < ADMITTED_FOR_MS;
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

  /**
   * The index record of an active key whose counters live in memory, or -1 when this key
   * must go the storage way (no index yet, not in it, or limits counted in Redis).
   */
  private indexed(digest: Buffer): number {
    const active = this.active;
    if (active === null || !active.ready || !this.limiter.local) return -1;
    return active.index.find(digest);
  }

  /**
   * The key that calls Gatehouse's own API, when everything needed to let it through is
   * in memory (cached record, index record with counters); null otherwise, and then
   * `resolveCaller` and `consumeLimit` take the full way.
   */
  knownCaller(presented: string): { record: ApiKeyRecord; indexed: number } | null {
    // The format (checksum) is not checked here: a digest found in the index is that of a
    // key Gatehouse issued, so the string presented is that key. Anything not found takes
    // the full way, which checks the format first. The length bounds what an
    // unauthenticated request can make this hash.
    if (!this.callers || presented.length !== keyLength(this.policy.prefix)) return null;
    const name = digestKeyInto(presented, this.digest);
    const indexed = this.indexed(this.digest);
    if (indexed < 0) return null;
    const now = this.clock();
    const record = this.callers.get(name, now);
    // The index holds the same revocation and expiry as the record, kept at least as fresh
    // (the cache forgets a key when the change log brings it): one status check is enough.
    if (!record || this.active?.index.status(indexed, now) !== "active") return null;
    return { record, indexed };
  }

  /**
   * Counts a use of a key that calls Gatehouse's own API (an admin or service key), as a
   * verification counts the key it checks: so `lastUsedAt` and the usage endpoint show
   * that the key is in use. Outcome as verify would name it.
   */
  countCallerUse(
    keyId: string,
    outcome: "VALID" | "RATE_LIMITED" | "EXPIRED" | "REVOKED" | "ADDRESS_NOT_ALLOWED",
    at = this.clock(),
    /** The key's index record, when `knownCaller` found it. */
    indexed = -1,
  ): void {
    this.usage.record(keyId, outcome, at, indexed >= 0 ? this.packedIdOf(indexed) : null);
  }

  /**
   * The packed id of an index record (in a buffer the next call overwrites), or null when
   * the index does not hold it packed: the usage count then parses the id string instead.
   */
  private packedIdOf(record: number): Buffer | null {
    return (this.active as ActiveKeys).index.copyPackedId(record, this.packedId) ? this.packedId : null;
  }

  /** Charges one use to a key found by `knownCaller`. */
  chargeKnown(indexed: number, policy: RateLimitPolicy): RateLimitOutcome {
    return this.take(indexed, policy, this.clock());
  }

  private take(record: number, policy: RateLimitPolicy, now: number): RateLimitOutcome {
    return (this.active as ActiveKeys).index.take(record, policy, now);
  }

  /** Charges one use to a key's rate limit (in the index when it is there). */
  consumeLimit(record: ApiKeyRecord, policy: RateLimitPolicy): RateLimitOutcome | Promise<RateLimitOutcome> {
    const indexed = this.indexed(record.digest);
    if (indexed >= 0) return this.take(indexed, policy, this.clock());
    return this.limiter.consume(record.id, policy);
  }

  /**
   * `address`: where the presented key's own client called from, as the resource server
   * saw it; null when not told (a key bound to addresses is then refused).
   */
  verify(
    presented: unknown,
    requiredScopes: readonly string[],
    context: ActorContext,
    address: string | null = null,
  ): VerifyResult | Promise<VerifyResult> {
    if (!isWellFormedKey(presented, this.policy.prefix)) return this.failed(presented, "MALFORMED", null, context);
    digestKeyInto(presented, this.digest);
    const record = this.indexed(this.digest);
    if (record < 0) return this.verifyFromStorage(presented, requiredScopes, context, address);
    const index = (this.active as ActiveKeys).index;
    const now = this.clock();
    const status = index.status(record, now);
    if (status !== "active") {
      // Revoked or expired since the index last swept: the same answers as storage gives.
      return this.failed(presented, status === "revoked" ? "REVOKED" : "EXPIRED", index.id(record), context);
    }
    const id = index.id(record);
    const allowlist = index.allowlist(record);
    if (allowlist !== null && !allowlist.allows(address)) return this.refusedAddress(presented, id, address, context);
    const scopes = index.scopes(record);
    const policy = index.rateLimit(record) ?? this.policy.defaultRateLimit;
    const ratelimit = index.take(record, policy, now);
    return this.conclude(
      { id, ownerId: index.ownerId(record), scopes, expiresAt: index.expiresAt(record) },
      ratelimit,
      requiredScopes,
      context,
      now,
      record,
    );
  }

  private async verifyFromStorage(
    presented: string,
    requiredScopes: readonly string[],
    context: ActorContext,
    address: string | null,
  ): Promise<VerifyResult> {
    const mark = this.active !== null && this.limiter.local ? this.active.mark() : null;
    const resolution = await this.resolve(presented);
    if (!resolution.ok) return this.failed(presented, resolution.code, resolution.record?.id ?? null, context);
    const record = resolution.record;
    if (!allowed(record, address)) return this.refusedAddress(presented, record.id, address, context);
    // Active but not in the index yet (made by another process moments ago): counted in
    // the index from now on, when that is safe (ActiveKeys.adopt).
    const adopted = mark === null ? -1 : (this.active as ActiveKeys).adopt(record, mark);
    if (adopted >= 0) {
      const now = this.clock();
      const ratelimit = this.take(adopted, this.policyOf(record), now);
      const key = { id: record.id, ownerId: record.ownerId, scopes: record.scopes, expiresAt: record.expiresAt };
      return this.conclude(key, ratelimit, requiredScopes, context, now, adopted);
    }
    const ratelimit = await this.consumeLimit(record, this.policyOf(record));
    return this.conclude(
      { id: record.id, ownerId: record.ownerId, scopes: record.scopes, expiresAt: record.expiresAt },
      ratelimit,
      requiredScopes,
      context,
      this.clock(),
    );
  }

  /** A key used from an address it is not allowed: audited with that address, counted, no use of its limit. */
  private refusedAddress(
    presented: string,
    keyId: string,
    address: string | null,
    context: ActorContext,
  ): VerifyResult {
    return this.failed(presented, "ADDRESS_NOT_ALLOWED", keyId, context, { address });
  }

  private failed(
    presented: unknown,
    code: "MALFORMED" | "NOT_FOUND" | "EXPIRED" | "REVOKED" | "ADDRESS_NOT_ALLOWED",
    keyId: string | null,
    context: ActorContext,
    extra: Record<string, unknown> = {},
  ): VerifyResult {
    const now = this.clock();
    if (keyId !== null) this.usage.record(keyId, code, now);
    this.audit.record(
      auditEvent(context, now, {
        action: "key.verify",
        outcome: "failure",
        targetType: "key",
        targetId: keyId,
        detail: {
          code,
          ...(code === "MALFORMED" ? {} : { hint: keyHint(presented as string) }),
          ...extra,
        },
      }),
    );
    this.onOutcome(code);
    return { valid: false, code };
  }

  private conclude(
    key: { id: string; ownerId: string | null; scopes: readonly string[]; expiresAt: number | null },
    ratelimit: RateLimitOutcome,
    requiredScopes: readonly string[],
    context: ActorContext,
    now: number,
    /** The key's index record, when it was verified from the index. */
    indexed = -1,
  ): VerifyResult {
    let code: VerifyFailureCode | null = null;
    if (!ratelimit.allowed) code = "RATE_LIMITED";
    else if (!requiredScopes.every((scope) => key.scopes.includes(scope))) code = "INSUFFICIENT_SCOPE";
    this.usage.record(key.id, code ?? "VALID", now, code === null && indexed >= 0 ? this.packedIdOf(indexed) : null);
    if (code !== null) {
      this.audit.record(
        auditEvent(context, now, {
          action: "key.verify",
          outcome: "failure",
          targetType: "key",
          targetId: key.id,
          detail: { code, ...(code === "INSUFFICIENT_SCOPE" ? { required: requiredScopes } : {}) },
        }),
      );
      this.onOutcome(code);
      return { valid: false, code, ratelimit };
    }
    this.onOutcome("VALID");
    return {
      valid: true,
      keyId: key.id,
      ownerId: key.ownerId,
      scopes: key.scopes as string[],
      expiresAt: key.expiresAt,
      ratelimit,
    };
  }
}

/** Whether a key may be used from `address` (always, for a key bound to no addresses). */
export function allowed(record: Pick<ApiKeyRecord, "allowedAddresses">, address: string | null): boolean {
  const allowlist = allowlistOf(record.allowedAddresses);
  return allowlist === null || allowlist.allows(address);
}
