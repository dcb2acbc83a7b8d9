import { hash } from "node:crypto";
import { pooledRandomBytes } from "../lib/random-pool.ts";

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
