import { createHmac, randomBytes } from "node:crypto";
import type { FastifyReply, FastifyRequest, preValidationHookHandler } from "fastify";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { type ActorContext, auditEvent } from "../audit/context.ts";
import {
  AddressNotAllowedError,
  ForbiddenError,
  RateLimitedError,
  UnauthenticatedError,
} from "../errors/gatehouse-error.ts";
import type { Gatehouse } from "../gatehouse.ts";
import { isWellFormedKey, keyHint } from "../keys/key-format.ts";
import { allowed } from "../keys/key-verifier.ts";
import type { Permission } from "../keys/permissions.ts";
import { missingPermissions } from "../keys/permissions.ts";
import { addressGroup } from "../lib/address-group.ts";
import { type RateLimitOutcome, rateLimitHeaders } from "../ratelimit/key-rate-limiter.ts";
import type { ApiKeyRecord, RateLimitPolicy } from "../storage/types.ts";

export interface Principal {
  key: ApiKeyRecord;
  context: ActorContext;
}

declare module "fastify" {
  interface FastifyRequest {
    principal: Principal | null;
  }
}

export function requestContext(request: FastifyRequest, actor: string): ActorContext {
  const userAgent = request.headers["user-agent"];
  return {
    actor,
    ip: request.ip ?? null,
    userAgent: typeof userAgent === "string" ? userAgent.slice(0, 256) : null,
    requestId: request.id,
  };
}

/** Bearer credentials from `Authorization` (RFC 6750 §2.1); nothing else is accepted. */
export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== "string") return null;
  const match = /^Bearer +([^\s]+) *$/i.exec(header);
  return match?.[1] ?? null;
}

/** The window failures are counted in, in seconds. */
const WINDOW_SECONDS = 60;

/** What a failed key answered when it was first seen from an address, kept for the window. */
export interface FailedKey {
  at: number;
  code: "NOT_FOUND" | "EXPIRED" | "REVOKED";
  /** The key's id when storage knows it (revoked, expired). */
  keyId: string | null;
}

/**
 * Guards against credential guessing from one address: failed authentications are
 * counted per IP, and past the limit the address gets 429 for a short block. The block
 * ends by itself, so nobody can lock a victim out for good, and a key already known to be
 * valid is let through it (see `requirePermissions`).
 *
 * A guess is a well-formed key not tried before: a key that fails counts once a window,
 * however often it comes back, and a malformed key or none at all does not count (they
 * cost no lookup, and no key can be found that way). A new-user trial found the
 * alternative: one service deployed with a wrong or revoked key, retrying, blocked its
 * address within seconds, and with it every other service behind the same NAT whose key
 * this node had not let in lately. A key retried within the window is answered from
 * here, as it was the first time, without a storage read or another audit event (a key
 * that failed cannot become valid: only Gatehouse makes keys, and revocation and expiry
 * are for good), so retrying costs no more than being blocked did.
 */
export class FailedAuthGuard {
  static readonly MAX_FAILURES = 30;
  static readonly BLOCK_SECONDS = 300;
  /** Failed keys remembered at most (address and fingerprint, ~150 bytes each). */
  static readonly MAX_COUNTED = 100_000;
  /** Address and key fingerprint of each failed key, oldest first. */
  private readonly counted = new Map<string, FailedKey>();
  /**
   * Keys the fingerprints: random per process, so they name no stored digest and
   * colliding keys cannot be made offline.
   */
  private readonly fingerprintKey = randomBytes(32);
  private readonly limiter = new RateLimiterMemory({
    points: FailedAuthGuard.MAX_FAILURES,
    duration: WINDOW_SECONDS,
    keyPrefix: "authfail",
  });
  /**
   * When each address last failed. An address that never failed (nearly every request)
   * is answered from here without asking the limiter, which costs a promise.
   */
  private readonly lastFailure = new Map<string, number>();

  /** False when the address certainly is not blocked; true when the limiter must say. */
  mayBeBlocked(ip: string, now = Date.now()): boolean {
    if (this.lastFailure.size === 0) return false;
    const sender = addressGroup(ip);
    const at = this.lastFailure.get(sender);
    if (at === undefined) return false;
    if (now - at < (FailedAuthGuard.BLOCK_SECONDS + 60) * 1000) return true;
    this.lastFailure.delete(sender);
    return false;
  }

  /** Seconds until the address may try again; 0 when it is not blocked. */
  async blockedFor(ip: string): Promise<number> {
    if (!this.mayBeBlocked(ip)) return 0;
    const res = await this.limiter.get(addressGroup(ip));
    if (!res || res.consumedPoints < FailedAuthGuard.MAX_FAILURES) return 0;
    return Math.max(1, Math.ceil(res.msBeforeNext / 1000));
  }

  private nameOf(ip: string, presented: string): string {
    // 96 bits tell keys apart; the key itself is not kept.
    return `${addressGroup(ip)} ${createHmac("sha256", this.fingerprintKey).update(presented).digest().toString("base64", 0, 12)}`;
  }

  /** How this key failed from this address within the window, or null (also for malformed keys). */
  failedLately(ip: string, presented: string, prefix: string, now = Date.now()): FailedKey | null {
    if (this.counted.size === 0 || !isWellFormedKey(presented, prefix)) return null;
    const failed = this.counted.get(this.nameOf(ip, presented));
    return failed !== undefined && now - failed.at < WINDOW_SECONDS * 1000 ? failed : null;
  }

  /**
   * Remembers a key that failed to authenticate and counts it toward the block, unless it
   * cannot be a guess (absent or malformed). A key retried within the window is answered
   * by `failedLately` and never reaches here.
   */
  async failedKey(ip: string, presented: string | null, prefix: string, failure: Omit<FailedKey, "at">): Promise<void> {
    if (presented === null || !isWellFormedKey(presented, prefix)) return;
    const now = Date.now();
    const name = this.nameOf(ip, presented);
    // Oldest first (an entry written again moves to the end), so the sweep stops at the
    // first entry still in its window: amortised O(1), where a scan of every entry on each
    // failure, once the map held 100,000 live ones, cost ~2 ms a failed request (reviewer).
    this.counted.delete(name);
    for (const [entry, failed] of this.counted) {
      if (now - failed.at < WINDOW_SECONDS * 1000 && this.counted.size < FailedAuthGuard.MAX_COUNTED) break;
      // Past the cap the oldest live entry goes too: a key forgotten is only looked up
      // and counted again (stricter), never less.
      this.counted.delete(entry);
    }
    this.counted.set(name, { at: now, ...failure });
    await this.fail(ip);
  }

  /**
   * Counts a failure; the one that reaches the limit blocks the address. An IPv6 address
   * counts as its /64 (one client usually holds all of it: counted apart, its addresses
   * would give it 2^64 times the allowance), as the audit log's flood brake counts senders.
   */
  async fail(ip: string): Promise<void> {
    const sender = addressGroup(ip);
    const now = Date.now();
    if (this.lastFailure.size >= 100_000) {
      // Many addresses failing: forget the ones whose window and block have passed.
      for (const [address] of this.lastFailure) this.mayBeBlocked(address, now);
    }
    this.lastFailure.set(sender, now);
    try {
      const res = await this.limiter.consume(sender, 1);
      if (res.consumedPoints >= FailedAuthGuard.MAX_FAILURES) {
        await this.limiter.block(sender, FailedAuthGuard.BLOCK_SECONDS);
      }
    } catch (rejection) {
      if (!(rejection instanceof RateLimiterRes)) throw rejection;
    }
  }
}

/**
 * The guard of admin routes: authenticates the bearer key, checks it holds every
 * permission the route needs, and charges the call to the key's own rate limit.
 * Every failure gives the same 401; the audit log keeps the reason. Routes run it as a
 * preValidation hook, before their JSON schemas: a caller who may not call the route
 * learns nothing about what it accepts.
 *
 * A callback hook rather than an async one: a known caller whose key and counters are in
 * memory (nearly every call of a busy resource server) is let through without a single
 * promise; anything else takes the full, asynchronous way.
 */
export function requirePermissions(
  gatehouse: Gatehouse,
  guard: FailedAuthGuard,
  permissions: readonly Permission[],
): preValidationHookHandler {
  const full = authenticateFully(gatehouse, guard, permissions);
  return function authenticate(request, reply, done) {
    // A key this node has let in lately, still active, passes even from an address
    // blocked for failures: the block stops guessing and the storage reads it would cost,
    // and must not let one bad client behind a shared address (a NAT, a Kubernetes node)
    // shut out every service there. Anything else from a blocked address is refused
    // before it is looked up (see the full way below).
    const presented = bearerToken(request);
    const known = presented === null ? null : gatehouse.verifier.knownCaller(presented);
    if (
      known === null ||
      missingPermissions(known.record.permissions, permissions).length > 0 ||
      !allowed(known.record, request.ip)
    ) {
      full(request, reply).then(() => done(), done);
      return;
    }
    const policy = gatehouse.verifier.policyOf(known.record);
    const ratelimit = gatehouse.verifier.chargeKnown(known.indexed, policy);
    const context = requestContext(request, `key:${known.record.id}`);
    done(admit(gatehouse, request, reply, known.record, context, policy, ratelimit, known.indexed) ?? undefined);
  };
}

/**
 * The last step of both ways in: the caller's own limit decides. Returns the refusal, or
 * null once the rate-limit headers are set and the principal is on the request.
 */
function admit(
  gatehouse: Gatehouse,
  request: FastifyRequest,
  reply: FastifyReply,
  key: ApiKeyRecord,
  context: ActorContext,
  policy: RateLimitPolicy,
  outcome: RateLimitOutcome,
  /** The key's record in the key index, when the fast way found it there. */
  indexed = -1,
): RateLimitedError | null {
  const now = gatehouse.clock();
  const headers = rateLimitHeaders(outcome, policy, now);
  gatehouse.verifier.countCallerUse(key.id, outcome.allowed ? "VALID" : "RATE_LIMITED", now, indexed);
  if (!outcome.allowed) return new RateLimitedError(Number(headers["retry-after"]), "key", headers);
  reply.headers(headers);
  request.principal = { key, context };
  return null;
}

/** A user or key id as routes take them (their schemas run later, after this guard). */
const NAMED_TARGET = /^(usr|key)_[0-9A-Za-z]{1,60}$/;

/**
 * The user or key a refused call names in its path (`/v1/users/{id}/password`), so that
 * the audit log's search by target finds who tried to act on it; none otherwise.
 */
function namedTarget(request: FastifyRequest): { targetType?: "user" | "key"; targetId?: string } {
  const id = (request.params as { id?: unknown } | undefined)?.id;
  const match = typeof id === "string" ? NAMED_TARGET.exec(id) : null;
  if (!match) return {};
  return { targetType: match[1] === "usr" ? "user" : "key", targetId: id as string };
}

function authenticateFully(gatehouse: Gatehouse, guard: FailedAuthGuard, permissions: readonly Permission[]) {
  return async function authenticate(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const blocked = await guard.blockedFor(request.ip);
    const presented = bearerToken(request);
    if (blocked > 0 && (presented === null || !gatehouse.verifier.admittedRecently(presented))) {
      throw new RateLimitedError(blocked, "address");
    }
    const prefix = gatehouse.config.keys.prefix;
    const failedLately = presented === null ? null : guard.failedLately(request.ip, presented, prefix);
    if (failedLately) {
      // The same key failed from here within the minute: the same answer, without a
      // storage read or another audit event (its first failure is in the audit log).
      if (failedLately.keyId && failedLately.code !== "NOT_FOUND") {
        gatehouse.verifier.countCallerUse(failedLately.keyId, failedLately.code);
      }
      throw new UnauthenticatedError(undefined, { refused: true });
    }
    const resolution = presented === null ? null : await gatehouse.verifier.resolveCaller(presented);
    if (!resolution?.ok) {
      const code = resolution?.code ?? "MISSING";
      if (code === "NOT_FOUND" || code === "EXPIRED" || code === "REVOKED") {
        await guard.failedKey(request.ip, presented, prefix, { code, keyId: resolution?.record?.id ?? null });
      }
      if (resolution?.record && (code === "EXPIRED" || code === "REVOKED")) {
        gatehouse.verifier.countCallerUse(resolution.record.id, code);
      }
      gatehouse.audit.record(
        auditEvent(requestContext(request, "anonymous"), gatehouse.clock(), {
          action: "auth.api_key",
          outcome: "failure",
          targetType: "key",
          targetId: resolution?.record?.id ?? null,
          detail: {
            code,
            route: request.routeOptions.url ?? null,
            ...(presented && code !== "MALFORMED" ? { hint: keyHint(presented) } : {}),
          },
        }),
      );
      throw new UnauthenticatedError(undefined, { refused: presented !== null });
    }
    const key = resolution.record;
    const context = requestContext(request, `key:${key.id}`);
    if (!allowed(key, request.ip)) {
      // The right key from the wrong place (a leaked key, or a service moved to new
      // addresses): audited and counted, but no guess, so it never brakes the address.
      gatehouse.verifier.countCallerUse(key.id, "ADDRESS_NOT_ALLOWED");
      gatehouse.audit.record(
        auditEvent(context, gatehouse.clock(), {
          action: "auth.api_key",
          outcome: "failure",
          targetType: "key",
          targetId: key.id,
          detail: { code: "ADDRESS_NOT_ALLOWED", route: request.routeOptions.url ?? null, hint: key.hint },
        }),
      );
      throw new AddressNotAllowedError(request.ip);
    }
    const missing = missingPermissions(key.permissions, permissions);
    if (missing.length > 0) {
      gatehouse.audit.record(
        auditEvent(context, gatehouse.clock(), {
          action: "auth.permission",
          outcome: "failure",
          ...namedTarget(request),
          detail: { missing, route: request.routeOptions.url ?? null },
        }),
      );
      throw new ForbiddenError(missing);
    }
    const policy = gatehouse.verifier.policyOf(key);
    const refused = admit(
      gatehouse,
      request,
      reply,
      key,
      context,
      policy,
      await gatehouse.verifier.consumeLimit(key, policy),
    );
    if (refused) throw refused;
  };
}
