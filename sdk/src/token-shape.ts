/**
 * The shape of a Gatehouse access token before any cryptography, matching the server's
 * own check (src/tokens/access-token.ts): the JWS compact serialisation only, three
 * unpadded base64url segments (RFC 7515 §7.1, §2 "Base64url Encoding"), bounded in
 * length. Padding, spaces, extra segments and the JSON serialisation never reach jose.
 */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Gatehouse's tokens are well under 1 KiB; the server refuses anything over this too. */
export const MAX_TOKEN_LENGTH = 8192;

/**
 * Gatehouse's kids are RFC 7638 thumbprints (43 characters) or HS256 ids (22). Anything
 * else is not ours and is refused before it can name a file, a query or a refetch.
 */
export const KID = /^[A-Za-z0-9_-]{16,64}$/;

/** A JWT in a query string: a base64url JSON header (`{"` is `eyJ`) and a second segment. */
const JWT_INSIDE = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+/;

/** Cheap bound checked before hashing a candidate for the cache lookup. */
export function withinTokenLength(candidate: unknown): candidate is string {
  return typeof candidate === "string" && candidate.length <= MAX_TOKEN_LENGTH;
}

export function hasCompactShape(candidate: unknown): candidate is string {
  return typeof candidate === "string" && candidate.length <= MAX_TOKEN_LENGTH && COMPACT_JWS.test(candidate);
}

/** True when `text` holds something shaped like a JWT anywhere in it. */
export function containsTokenShape(text: string): boolean {
  return JWT_INSIDE.test(text);
}
