import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { StorageUnavailableError } from "../errors/gatehouse-error.ts";
import type { RateLimitPolicy } from "../storage/types.ts";

export interface RateLimitOutcome {
  allowed: boolean;
  limit: number;
  remaining: number;
  /** When the current window ends, in ms since the epoch. */
  reset: number;
}

export type LimiterFactory = (policy: RateLimitPolicy, keyPrefix: string) => RateLimiterAbstract;

/** Per-node counters; the Redis factory (storage/redis) makes them global across nodes. */
export const memoryLimiterFactory: LimiterFactory = (policy, keyPrefix) =>
  new RateLimiterMemory({ points: policy.limit, duration: policy.windowSeconds, keyPrefix });

/**
 * Fixed-window limits per API key, each key with its own policy. One limiter instance
 * per distinct policy (rate-limiter-flexible fixes points and duration per instance).
 * Counting is atomic: in memory by the single thread, in Redis by its scripts.
 */
export class KeyRateLimiter {
  private readonly limiters = new Map<string, RateLimiterAbstract>();
  private readonly factory: LimiterFactory;
  private readonly now: () => number;
  /**
   * True when counts are this process's own (no shared store): then keys held in the
   * in-memory index (keys/key-index.ts) are counted there instead, without a promise.
   */
  readonly local: boolean;

  constructor(options: { factory?: LimiterFactory; now?: () => number } = {}) {
    this.local = options.factory === undefined;
    this.factory = options.factory ?? memoryLimiterFactory;
    this.now = options.now ?? Date.now;
  }

  private limiterFor(policy: RateLimitPolicy): RateLimiterAbstract {
    const name = `${policy.limit}/${policy.windowSeconds}`;
    let limiter = this.limiters.get(name);
    if (!limiter) {
      limiter = this.factory(policy, `gh:rl:${name}`);
      this.limiters.set(name, limiter);
    }
    return limiter;
  }

  /** Takes one unit from `subject`'s window. */
  async consume(subject: string, policy: RateLimitPolicy): Promise<RateLimitOutcome> {
    try {
      const res = await this.limiterFor(policy).consume(subject, 1);
      return this.outcome(true, policy, res);
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return this.outcome(false, policy, rejection);
      // A shared store that cannot count (Redis down, limits failing closed): 503, as the
      // sign-in brakes answer, not a bare 500 logged as a bug.
      throw new StorageUnavailableError(rejection);
    }
  }

  private outcome(allowed: boolean, policy: RateLimitPolicy, res: RateLimiterRes): RateLimitOutcome {
    return {
      allowed,
      limit: policy.limit,
      remaining: Math.max(0, res.remainingPoints),
      reset: this.now() + Math.max(0, res.msBeforeNext),
    };
  }
}

/**
 * Response headers per draft-ietf-httpapi-ratelimit-headers (RateLimit-Policy and
 * RateLimit, `q` quota, `w` window, `r` remaining, `t` seconds to reset), plus
 * Retry-After on refusal.
 */
export function rateLimitHeaders(
  outcome: RateLimitOutcome,
  policy: RateLimitPolicy,
  now: number,
): Record<string, string> {
  const seconds = Math.max(0, Math.ceil((outcome.reset - now) / 1000));
  const headers: Record<string, string> = {
    "ratelimit-policy": `"key";q=${policy.limit};w=${policy.windowSeconds}`,
    ratelimit: `"key";r=${outcome.remaining};t=${seconds}`,
  };
  if (!outcome.allowed) headers["retry-after"] = String(Math.max(1, seconds));
  return headers;
}
