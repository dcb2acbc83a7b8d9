import {
  assertBoolean,
  assertInteger,
  assertNullableString,
  assertObject,
  assertOneOf,
  assertString,
  assertStringArray,
  type JsonObject,
} from "./assert.ts";

/** Why Gatehouse refused a key (the `code` of a `{valid: false}` answer). */
export const VERIFY_FAILURE_CODES = [
  "MALFORMED",
  "NOT_FOUND",
  "EXPIRED",
  "REVOKED",
  "ADDRESS_NOT_ALLOWED",
  "INSUFFICIENT_SCOPE",
  "RATE_LIMITED",
] as const;

export type VerifyFailureCode = (typeof VERIFY_FAILURE_CODES)[number];

/** The key's rate-limit window after this verification, as Gatehouse counted it. */
export interface RateLimitState {
  limit: number;
  remaining: number;
  /** When the current window ends, in ms since the epoch. */
  reset: number;
}

export interface VerifiedKey {
  keyId: string;
  ownerId: string | null;
  scopes: string[];
  /** Ms since the epoch, or null for a key that never expires. */
  expiresAt: number | null;
}

export type VerifyResult =
  | (VerifiedKey & {
      valid: true;
      /** Null when answered from the cache: Gatehouse did not count this use. */
      ratelimit: RateLimitState | null;
      /** True when answered from this process's positive cache, without asking Gatehouse. */
      cached: boolean;
    })
  | { valid: false; code: VerifyFailureCode; ratelimit: RateLimitState | null };

function parseRateLimit(value: unknown): RateLimitState {
  assertObject(value, "ratelimit");
  const { limit, remaining, reset } = value;
  assertInteger(limit, "ratelimit.limit");
  assertInteger(remaining, "ratelimit.remaining");
  assertInteger(reset, "ratelimit.reset");
  return { limit, remaining, reset };
}

function parseInstant(value: unknown, name: string): number | null {
  assertNullableString(value, name);
  if (value === null) return null;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new TypeError(`${name} must be an ISO 8601 instant or null`);
  return ms;
}

/**
 * Checks the body of a 200 answer from `POST /v1/keys/verify` field by field and returns
 * it in the SDK's shape. Throws `TypeError` on anything that does not match.
 */
export function parseVerifyAnswer(body: unknown): VerifyResult {
  assertObject(body, "answer");
  const answer: JsonObject = body;
  assertBoolean(answer.valid, "valid");
  if (!answer.valid) {
    assertOneOf(answer.code, VERIFY_FAILURE_CODES, "code");
    return {
      valid: false,
      code: answer.code,
      ratelimit: answer.ratelimit === undefined ? null : parseRateLimit(answer.ratelimit),
    };
  }
  assertString(answer.keyId, "keyId");
  assertNullableString(answer.ownerId, "ownerId");
  assertStringArray(answer.scopes, "scopes");
  return {
    valid: true,
    keyId: answer.keyId,
    ownerId: answer.ownerId,
    scopes: answer.scopes,
    expiresAt: parseInstant(answer.expiresAt, "expiresAt"),
    ratelimit: parseRateLimit(answer.ratelimit),
    cached: false,
  };
}
