import { randomUUID } from "node:crypto";
import type { SigningKeyring } from "../signing/keyring.ts";
import { JwsError, parseCompactJws, verifyCompactJws } from "./compact-jws.ts";
import { signCompactJws } from "./jws-sign.ts";

/** RFC 9068 §2.1: the media type of JWT access tokens, in the `typ` header. */
export const ACCESS_TOKEN_TYPE = "at+jwt";

/** Our kids are RFC 7638 thumbprints (43) or HS256 ids (22): anything else is not ours. */
const KID = /^[A-Za-z0-9_-]{16,64}$/;

export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string;
  iat: number;
  exp: number;
  jti: string;
  scope: string;
  client_id: string;
  /** The refresh token family (sign-in) the token belongs to; logout ends it. */
  sid: string;
}

/** Why a token was refused: for the audit log, never for the client. */
export type AccessTokenFailure =
  | "MALFORMED"
  | "UNKNOWN_KEY"
  | "ALG_NOT_ALLOWED"
  | "BAD_SIGNATURE"
  | "EXPIRED"
  | "NOT_YET_VALID"
  | "WRONG_ISSUER"
  | "WRONG_AUDIENCE"
  | "CLAIM_INVALID"
  | "WRONG_TYPE"
  | "DENIED";

export class AccessTokenError extends Error {
  readonly reason: AccessTokenFailure;
  constructor(reason: AccessTokenFailure) {
    super(`access token refused: ${reason}`);
    this.name = "AccessTokenError";
    this.reason = reason;
  }
}

export interface AccessTokenSettings {
  issuer: string;
  audience: string;
  lifetimeSeconds: number;
}

/** Signs an access token with the keyring's current key. */
export async function issueAccessToken(
  keyring: SigningKeyring,
  settings: AccessTokenSettings,
  claims: { sub: string; scope: string; client_id: string; sid: string; now: number },
): Promise<{ token: string; claims: AccessTokenClaims }> {
  const key = await keyring.signingKey();
  const iat = Math.floor(claims.now / 1000);
  const payload: AccessTokenClaims = {
    iss: settings.issuer,
    sub: claims.sub,
    aud: settings.audience,
    iat,
    exp: iat + settings.lifetimeSeconds,
    jti: randomUUID(),
    scope: claims.scope,
    client_id: claims.client_id,
    sid: claims.sid,
  };
  const token = await signCompactJws(key.alg, key.privateKey, { typ: ACCESS_TOKEN_TYPE, kid: key.kid }, { ...payload });
  return { token, claims: payload };
}

function stringClaim(payload: Record<string, unknown>, name: string): string {
  const value = payload[name];
  if (typeof value !== "string" || value.length === 0 || value.length > 1024) {
    throw new AccessTokenError("CLAIM_INVALID");
  }
  return value;
}

function numericClaim(payload: Record<string, unknown>, name: string): number {
  const value = payload[name];
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new AccessTokenError("CLAIM_INVALID");
  return value;
}

/** What an access token must carry (RFC 9068 §2.2, plus our client_id). */
const REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "exp", "jti", "client_id"] as const;
/** Leeway for clocks that disagree, on exp, nbf and iat (seconds). */
const CLOCK_TOLERANCE = 5;

/**
 * Verifies an access token per RFC 8725 and RFC 9068 §4: strict compact form; the key
 * comes from our keyring by kid, never from the token (jku, x5u, jwk, x5c are ignored);
 * the algorithm must be one the keyring uses and the one of that very key; issuer,
 * audience, `typ`, expiry, not-before and age are checked against our own clock.
 *
 * The signature is checked synchronously with node:crypto (src/tokens/compact-jws.ts), not
 * through WebCrypto: no hop to libuv's thread pool, where argon2id may be hashing.
 */
export async function verifyAccessToken(
  keyring: SigningKeyring,
  settings: AccessTokenSettings,
  token: string,
  now: number,
): Promise<AccessTokenClaims> {
  let payload: Record<string, unknown>;
  try {
    const jws = parseCompactJws(token);
    const { header } = jws;
    await keyring.start();
    // The algorithm is pinned before any key is looked up (RFC 8725 §3.1).
    const alg = header.alg;
    if (typeof alg !== "string" || !keyring.algorithms().some((allowed) => allowed === alg)) {
      throw new AccessTokenError("ALG_NOT_ALLOWED");
    }
    if (typeof header.kid !== "string" || !KID.test(header.kid)) throw new AccessTokenError("UNKNOWN_KEY");
    const key = await keyring.verificationKey(header.kid);
    if (!key) throw new AccessTokenError("UNKNOWN_KEY");
    // One key, one algorithm: a token naming another alg for this kid is refused
    // before any cryptography (RFC 8725 §3.1, the key-confusion attack).
    if (key.alg !== alg) throw new AccessTokenError("ALG_NOT_ALLOWED");
    payload = verifyCompactJws(jws, key.verifyKey, key.alg, {
      issuer: settings.issuer,
      audience: settings.audience,
      typ: ACCESS_TOKEN_TYPE,
      requiredClaims: REQUIRED_CLAIMS,
    });
  } catch (error) {
    if (error instanceof AccessTokenError) throw error;
    if (error instanceof JwsError) throw new AccessTokenError(error.reason);
    throw error;
  }
  const iat = numericClaim(payload, "iat");
  const exp = numericClaim(payload, "exp");
  checkTimes(payload, { iat, exp, now, lifetimeSeconds: settings.lifetimeSeconds });
  const aud = payload.aud;
  return {
    iss: stringClaim(payload, "iss"),
    sub: stringClaim(payload, "sub"),
    aud: typeof aud === "string" ? aud : settings.audience,
    iat,
    exp,
    jti: stringClaim(payload, "jti"),
    scope: typeof payload.scope === "string" ? payload.scope : "",
    client_id: stringClaim(payload, "client_id"),
    sid: stringClaim(payload, "sid"),
  };
}

/**
 * RFC 7519 §4.1.4-6 on our clock, in whole seconds with 5 s of tolerance: not expired,
 * not before `nbf`, not issued in the future, not older than the configured lifetime,
 * and not claiming to live longer than we issue tokens.
 */
function checkTimes(
  payload: Record<string, unknown>,
  times: { iat: number; exp: number; now: number; lifetimeSeconds: number },
): void {
  const { iat, exp, lifetimeSeconds } = times;
  const now = Math.floor(times.now / 1000);
  if (exp <= now - CLOCK_TOLERANCE) throw new AccessTokenError("EXPIRED");
  if (payload.nbf !== undefined && numericClaim(payload, "nbf") > now + CLOCK_TOLERANCE) {
    throw new AccessTokenError("NOT_YET_VALID");
  }
  if (iat > now + CLOCK_TOLERANCE) throw new AccessTokenError("NOT_YET_VALID");
  if (now - iat - CLOCK_TOLERANCE > lifetimeSeconds) throw new AccessTokenError("EXPIRED");
  if (exp - iat > lifetimeSeconds) throw new AccessTokenError("CLAIM_INVALID");
}
