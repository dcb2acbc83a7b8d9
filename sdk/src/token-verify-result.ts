import { errors } from "jose";
import type { VerifiedToken } from "./verified-token.ts";

/**
 * Why a token was refused: for your logs, never for the client (the guards answer every
 * one of them with the same 401). Mirrors the reasons Gatehouse records in its audit log.
 */
export type TokenFailureReason =
  /** Not three unpadded base64url segments, too long, or not decodable as a JWT. */
  | "MALFORMED"
  /** No `kid`, a `kid` that is not Gatehouse-shaped, or one the JWKS does not hold. */
  | "UNKNOWN_KEY"
  /** `alg` is not in the pinned list (alg none, HS256 key confusion…). */
  | "ALG_NOT_ALLOWED"
  | "BAD_SIGNATURE"
  | "EXPIRED"
  /** `nbf` or `iat` in the future, beyond the clock tolerance. */
  | "NOT_YET_VALID"
  /**
   * `iss` is not the issuer this verifier pins: a token from another Gatehouse, or the
   * same one under another URL (`localhost` against `127.0.0.1`, a trailing slash): the
   * usual sign of `issuer` set to something other than `GATEHOUSE_ISSUER`.
   */
  | "WRONG_ISSUER"
  /** `aud` names none of the audiences this verifier accepts (`GATEHOUSE_JWT_AUDIENCE`). */
  | "WRONG_AUDIENCE"
  /** A missing claim, a claim of the wrong type, or a lifetime longer than allowed. */
  | "CLAIM_INVALID"
  /** `typ` is not `at+jwt` (RFC 9068 §4): an ID token or another JWT cannot pass as an access token. */
  | "WRONG_TYPE"
  /** The revocation check says Gatehouse no longer accepts the token (logout, revoked sign-in, disabled user). */
  | "REVOKED";

export type TokenVerifyResult =
  | {
      valid: true;
      token: VerifiedToken;
      /** True when answered from the cache of verified tokens, without a signature check. */
      cached: boolean;
    }
  | { valid: false; code: "INVALID_TOKEN"; reason: TokenFailureReason }
  /** The token is valid but lacks a scope: the guards answer 403, not 401 (RFC 6750 §3.1). */
  | { valid: false; code: "INSUFFICIENT_SCOPE"; token: VerifiedToken; missingScopes: string[] };

/** Refusal thrown from inside jose's key resolution, carrying the reason out. */
export class TokenRefusal extends Error {
  readonly reason: TokenFailureReason;
  /** The JWKS holds no key with this kid (a refetch may find it). */
  readonly unknownKid: boolean;
  constructor(reason: TokenFailureReason, options: { unknownKid?: boolean } = {}) {
    super(`access token refused: ${reason}`);
    this.name = "TokenRefusal";
    this.reason = reason;
    this.unknownKid = options.unknownKid === true;
  }
}

/** Narrows what jose threw to a reason, by class (jose's errors have stable codes and classes). */
export function failureOf(error: unknown): TokenFailureReason {
  if (error instanceof TokenRefusal) return error.reason;
  if (error instanceof errors.JWTExpired) return "EXPIRED";
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === "typ") return "WRONG_TYPE";
    if (error.claim === "nbf" || (error.claim === "iat" && error.reason === "check_failed")) return "NOT_YET_VALID";
    if (error.claim === "iss" && error.reason === "check_failed") return "WRONG_ISSUER";
    if (error.claim === "aud" && error.reason === "check_failed") return "WRONG_AUDIENCE";
    return "CLAIM_INVALID";
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "ALG_NOT_ALLOWED";
  if (error instanceof errors.JWSSignatureVerificationFailed) return "BAD_SIGNATURE";
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return "UNKNOWN_KEY";
  }
  return "MALFORMED";
}
