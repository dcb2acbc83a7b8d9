import type { Redis } from "ioredis";
import { RateLimiterMemory, RateLimiterRedis } from "rate-limiter-flexible";
import type { LimiterFactory } from "../../ratelimit/key-rate-limiter.ts";

/**
 * Rate limits shared by every node through Redis (rate-limiter-flexible's atomic Lua
 * increment). When Redis is not ready, each node falls back to its own in-memory
 * counters (the "insurance" limiter), unless `failClosed`, in which case the limiter
 * errors and the request is refused with 503.
 */
export function redisLimiterFactory(
  client: Redis,
  options: {
    failClosed: boolean /** This store's prefix (`redisNamespace`); none: keys as given. */;
    namespace?: string;
  },
): LimiterFactory {
  return (policy, name) => {
    const keyPrefix = options.namespace ? `${options.namespace}:${name}` : name;
    return new RateLimiterRedis({
      storeClient: client,
      points: policy.limit,
      duration: policy.windowSeconds,
      keyPrefix,
      rejectIfRedisNotReady: true,
      ...(options.failClosed
        ? {}
        : {
            insuranceLimiter: new RateLimiterMemory({
              points: policy.limit,
              duration: policy.windowSeconds,
              keyPrefix,
            }),
          }),
    });
  };
}
