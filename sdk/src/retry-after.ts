/**
 * The longest delay the SDK passes on to clients, in seconds: a day. A longer one from
 * Gatehouse or a proxy is broken rather than meant, and an unbounded one is not even a
 * valid header value (`99999999999999999999999` would be sent as `1e+23`).
 */
export const MAX_RETRY_AFTER_SECONDS = 86_400;

/**
 * Reads Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. Returns whole
 * seconds from `now`, at most `MAX_RETRY_AFTER_SECONDS`, or null when absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number): number | null {
  if (value === null) return null;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Math.min(Number(trimmed), MAX_RETRY_AFTER_SECONDS);
  const at = Date.parse(trimmed);
  return Number.isNaN(at) ? null : secondsUntil(at, now);
}

/**
 * Whole seconds from `now` until `at` (ms since the epoch), never negative and at most
 * `MAX_RETRY_AFTER_SECONDS`: a `reset` far in the future from a broken answer must not
 * turn into a 13-digit Retry-After or RateLimit `t=`.
 */
export function secondsUntil(at: number, now: number): number {
  return Math.min(MAX_RETRY_AFTER_SECONDS, Math.max(0, Math.ceil((at - now) / 1000)));
}
