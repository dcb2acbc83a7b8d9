import { randomUUID } from "node:crypto";
import { errors, jwtVerify, SignJWT } from "jose";
import type { SigningKeyring } from "../signing/keyring.ts";

/** RFC 9068 §2.1: the media type of JWT access tokens, in the `typ` header. */
export const ACCESS_TOKEN_TYPE = "at+jwt";

/** Three unpadded base64url segments and nothing else (RFC 7515 §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const MAX_TOKEN_LENGTH = 8192;
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
  const token = await new SignJWT({ ...payload })
    .setProtectedHeader({ alg: key.alg, typ: ACCESS_TOKEN_TYPE, kid: key.kid })
    .sign(key.privateKey);
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

/**
 * Verifies an access token per RFC 8725 and RFC 9068 §4: strict compact form; the key
 * comes from our keyring by kid, never from the token (jku, x5u, jwk, x5c are ignored);
 * the algorithm must be one the keyring uses and the one of that very key; issuer,
 * audience, `typ`, expiry, not-before and age are checked against our own clock.
 */
export async function verifyAccessToken(
  keyring: SigningKeyring,
  settings: AccessTokenSettings,
  token: string,
  now: number,
): Promise<AccessTokenClaims> {
  if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw new AccessTokenError("MALFORMED");
  await keyring.start();
  let payload: Record<string, unknown>;
  try {
    const verified = await jwtVerify(
      token,
      async (header) => {
        if (typeof header.kid !== "string" || !KID.test(header.kid)) throw new AccessTokenError("UNKNOWN_KEY");
        const key = await keyring.verificationKey(header.kid);
        if (!key) throw new AccessTokenError("UNKNOWN_KEY");
        // One key, one algorithm: a token naming another alg for this kid is refused
        // before any cryptography (RFC 8725 §3.1, the key-confusion attack).
        if (key.alg !== header.alg) throw new AccessTokenError("ALG_NOT_ALLOWED");
        return key.verifyKey;
      },
      {
        algorithms: keyring.algorithms(),
        issuer: settings.issuer,
        audience: settings.audience,
        typ: ACCESS_TOKEN_TYPE,
        requiredClaims: ["iss", "sub", "aud", "iat", "exp", "jti", "client_id"],
        maxTokenAge: settings.lifetimeSeconds,
        currentDate: new Date(now),
        clockTolerance: 5,
      },
    );
    payload = verified.payload;
  } catch (error) {
    throw new AccessTokenError(failureOf(error));
  }
  const iat = numericClaim(payload, "iat");
  const exp = numericClaim(payload, "exp");
  // A token may not claim to come from the future, nor to live longer than we issue them.
  if (iat > Math.floor(now / 1000) + 5 || exp - iat > settings.lifetimeSeconds) {
    throw new AccessTokenError("CLAIM_INVALID");
  }
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

function failureOf(error: unknown): AccessTokenFailure {
  if (error instanceof AccessTokenError) return error.reason;
  if (error instanceof errors.JWTExpired) return "EXPIRED";
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "typ") return "WRONG_TYPE";
    if (error.claim === "nbf" || (error.claim === "iat" && error.reason === "check_failed")) return "NOT_YET_VALID";
    return "CLAIM_INVALID";
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "ALG_NOT_ALLOWED";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "BAD_SIGNATURE";
  return "MALFORMED";
}
