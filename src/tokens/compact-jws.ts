import type { KeyObject } from "node:crypto";
import { createVerifier, TokenError } from "fast-jwt";
import type { SigningAlgorithm } from "../storage/types.ts";

/**
 * Synchronous JWS verification for access tokens: fast-jwt over `node:crypto`, on the
 * calling thread. jose (which signs) goes through WebCrypto, whose every verify is a job
 * on libuv's thread pool, the pool argon2id fills during sign-ins; a synchronous check
 * costs a third of the CPU and never waits for a hash to finish (bench/jwt-libraries.ts,
 * docs/benchmarks.md).
 */

/** Three unpadded base64url segments and nothing else (RFC 7515 §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
export const MAX_TOKEN_LENGTH = 8192;

/** Why fast-jwt refused a token, in our vocabulary (for the audit log only). */
export type JwsFailure = "MALFORMED" | "ALG_NOT_ALLOWED" | "BAD_SIGNATURE" | "CLAIM_INVALID" | "WRONG_TYPE";

export class JwsError extends Error {
  readonly reason: JwsFailure;
  constructor(reason: JwsFailure) {
    super(`JWS refused: ${reason}`);
    this.name = "JwsError";
    this.reason = reason;
  }
}

/**
 * The protected header of a token in the strict compact form, decoded before any key is
 * chosen (the kid and alg pick the key). Throws `JwsError("MALFORMED")`.
 */
export function compactHeader(token: string): Record<string, unknown> {
  if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw new JwsError("MALFORMED");
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString("utf8"));
  } catch {
    throw new JwsError("MALFORMED");
  }
  if (!isJsonObject(header)) throw new JwsError("MALFORMED");
  return header;
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

export interface JwsPins {
  issuer: string;
  audience: string;
  /** RFC 9068 §4: `at+jwt` (also accepted as `application/at+jwt`, RFC 7515 §4.1.9). */
  typ: string;
  requiredClaims: readonly string[];
}

type Verify = (token: string) => unknown;

/**
 * One fast-jwt verifier per key and pins, built on first use (fast-jwt imports the key at
 * creation). Each is pinned to the one algorithm of its key, so a token naming another
 * (none, HS256 keyed with the public key, PS256 with an RS256 key) is refused before any
 * cryptography. Time claims are left to the caller, on its own clock: fast-jwt reads
 * the clock once, when the verifier is created.
 */
const verifiers = new WeakMap<KeyObject, { pins: JwsPins; verify: Verify }>();

function verifierFor(key: KeyObject, alg: SigningAlgorithm, pins: JwsPins): Verify {
  const cached = verifiers.get(key);
  if (cached && samePins(cached.pins, pins)) return cached.verify;
  const verify: Verify = createVerifier({
    // fast-jwt takes PEM (or the HS256 secret's bytes), not a KeyObject.
    key: key.type === "secret" ? key.export() : key.export({ type: "spki", format: "pem" }).toString(),
    algorithms: [alg],
    allowedIss: pins.issuer,
    allowedAud: pins.audience,
    checkTyp: pins.typ,
    requiredClaims: [...pins.requiredClaims],
    ignoreExpiration: true,
    ignoreNotBefore: true,
    cache: false,
  });
  verifiers.set(key, { pins: { ...pins }, verify });
  return verify;
}

function samePins(a: JwsPins, b: JwsPins): boolean {
  return (
    a.issuer === b.issuer &&
    a.audience === b.audience &&
    a.typ === b.typ &&
    a.requiredClaims.length === b.requiredClaims.length &&
    a.requiredClaims.every((claim, i) => claim === b.requiredClaims[i])
  );
}

/**
 * Checks the signature with `key` under `alg`, then `typ`, `crit` (none understood),
 * `iss`, `aud` and that the required claims are present. Returns the payload, a JSON
 * object whose other claims are still untrusted in shape. Throws `JwsError`.
 */
export function verifyCompactJws(
  token: string,
  key: KeyObject,
  alg: SigningAlgorithm,
  pins: JwsPins,
): Record<string, unknown> {
  let payload: unknown;
  try {
    payload = verifierFor(key, alg, pins)(token);
  } catch (error) {
    throw new JwsError(failureOf(error));
  }
  // fast-jwt refuses a payload that is not an object; checked again for the compiler.
  if (!isJsonObject(payload)) throw new JwsError("MALFORMED");
  return payload;
}

function failureOf(error: unknown): JwsFailure {
  if (!(error instanceof TokenError)) return "MALFORMED";
  switch (error.code) {
    case TokenError.codes.invalidAlgorithm:
      return "ALG_NOT_ALLOWED";
    case TokenError.codes.invalidSignature:
    case TokenError.codes.missingSignature:
    case TokenError.codes.verifyError:
      return "BAD_SIGNATURE";
    case TokenError.codes.invalidType:
      return "WRONG_TYPE";
    case TokenError.codes.invalidClaimType:
    case TokenError.codes.invalidClaimValue:
    case TokenError.codes.missingRequiredClaim:
      return "CLAIM_INVALID";
    default:
      return "MALFORMED";
  }
}
