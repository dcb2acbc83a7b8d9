import type { RateLimitPolicy } from "../storage/types.ts";

export interface KeyPolicy {
  /** The service prefix of every key, e.g. `gate`. */
  prefix: string;
  /** Longest lifetime a key may be given, in seconds. */
  maxLifetimeSeconds: number;
  /** When true, keys may be created with `expiresInSeconds: null` (never expire). */
  allowNoExpiry: boolean;
  /** Applies to keys created without a rate limit of their own. */
  defaultRateLimit: RateLimitPolicy;
  /** Longest grace period a rotation may grant, in seconds. */
  maxGracePeriodSeconds: number;
}
