import { hash } from "node:crypto";
import { pooledRandomBytes } from "../lib/random-pool.ts";
import type { RefreshTokenRef } from "../storage/types.ts";

export type RandomBytes = (size: number) => Buffer;

/** 256 random bits, base64url without padding: 43 characters. */
const OPAQUE_TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** A bearer secret (refresh token, session id): 256 bits from the CSPRNG. */
export function newOpaqueToken(randomBytes: RandomBytes = pooledRandomBytes): string {
  return randomBytes(32).toString("base64url");
}

export function isOpaqueToken(value: string): boolean {
  return OPAQUE_TOKEN.test(value);
}

/**
 * What storage keeps instead of the token: SHA-256. The token has 256 bits of entropy,
 * so a fast hash is enough (no salt or stretching needed) and lookups stay one index probe.
 */
export function digestOpaqueToken(token: string): Buffer {
  // One-shot hash: no Hash object per call.
  return hash("sha256", token, "buffer");
}

/**
 * Refresh tokens: `<record id>.<secret>`, the secret a 256-bit opaque token. The id is
 * not secret (it says only when the token was issued); it lets storage find the record
 * by a key that grows with time instead of by the digest, a random place in the index for
 * every token issued. The secret's digest must then match. Tokens issued before this form
 * are a bare secret: they are found by the digest of the whole token.
 */
const REFRESH_TOKEN = /^(rtk_[0-9a-f]{12}[0-9A-Za-z]{15})\.([A-Za-z0-9_-]{43})$/;

export function newRefreshToken(
  id: string,
  randomBytes: RandomBytes = pooledRandomBytes,
): { token: string; digest: Buffer } {
  const secret = newOpaqueToken(randomBytes);
  return { token: `${id}.${secret}`, digest: digestOpaqueToken(secret) };
}

/**
 * A refresh token wherever it sits in a text (a URL, say), with its id (not secret) as
 * group 1: for refusing and redacting credentials in URLs, as keys are.
 */
export const REFRESH_TOKEN_ANYWHERE = /(rtk_[0-9a-f]{12}[0-9A-Za-z]{15})\.[A-Za-z0-9_-]{43}/;

/** Where storage finds the record a refresh token names; null when it is not a refresh token. */
export function refreshTokenRef(token: string): RefreshTokenRef | null {
  const match = REFRESH_TOKEN.exec(token);
  if (match) return { id: match[1] as string, digest: digestOpaqueToken(match[2] as string) };
  return isOpaqueToken(token) ? { id: null, digest: digestOpaqueToken(token) } : null;
}
