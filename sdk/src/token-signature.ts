import { KeyObject } from "node:crypto";
import { createVerifier, TokenError } from "fast-jwt";
import { assertObject, type JsonObject } from "./assert.ts";
import type { TokenAlgorithm } from "./token-verifier.ts";
import { TokenRefusal } from "./token-verify-result.ts";

/**
 * The signature check of an access token, synchronous: fast-jwt over `node:crypto`, on
 * the calling thread. jose (which fetches and selects the JWKS keys) verifies through
 * WebCrypto, whose every verify is an async job on libuv's thread pool: about three
 * times the CPU of a direct RS256 check, plus the hop (bench/jwt-libraries.ts).
 */

/** What a token must satisfy besides its signature, fixed when the verifier is created. */
export interface SignaturePins {
  issuer: string;
  audience: string | readonly string[];
  /** RFC 9068 §4: `at+jwt` (also accepted as `application/at+jwt`, RFC 7515 §4.1.9). */
  typ: string;
  requiredClaims: readonly string[];
}

/**
 * The protected header of a token already known to be in the strict compact form
 * (`hasCompactShape`), decoded to choose the key. Throws `TokenRefusal("MALFORMED")`.
 */
export function protectedHeader(token: string): JsonObject {
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString("utf8"));
    assertObject(header, "JWS header");
    return header;
  } catch {
    throw new TokenRefusal("MALFORMED");
  }
}

type Verify = (token: string) => unknown;

/**
 * Checks a token's signature with `key` (a JWKS key jose imported) under `alg`, then its
 * `typ`, `crit` (no extension is understood), `iss`, `aud` and that the required claims
 * are present. Time claims are the caller's, on its own clock (fast-jwt reads the clock
 * once, when a verifier is created). Returns the payload; throws `TokenRefusal`.
 */
export function createSignatureCheck(pins: SignaturePins) {
  // One fast-jwt verifier per JWKS key: built on first use (fast-jwt imports the key at
  // creation) and dropped with the key when jose refetches the JWKS. Each is pinned to
  // the one algorithm it was made for.
  const verifiers = new WeakMap<CryptoKey, Verify>();

  function verifierFor(key: CryptoKey, alg: TokenAlgorithm): Verify {
    let verify = verifiers.get(key);
    if (!verify) {
      verify = createVerifier({
        // fast-jwt takes PEM, not a CryptoKey.
        key: KeyObject.from(key).export({ type: "spki", format: "pem" }).toString(),
        algorithms: [alg],
        allowedIss: pins.issuer,
        allowedAud: typeof pins.audience === "string" ? pins.audience : [...pins.audience],
        checkTyp: pins.typ,
        requiredClaims: [...pins.requiredClaims],
        ignoreExpiration: true,
        ignoreNotBefore: true,
        cache: false,
      });
      verifiers.set(key, verify);
    }
    return verify;
  }

  return function checkSignature(token: string, key: CryptoKey, alg: TokenAlgorithm): JsonObject {
    let payload: unknown;
    try {
      payload = verifierFor(key, alg)(token);
    } catch (error) {
      throw new TokenRefusal(reasonOf(error));
    }
    // fast-jwt refuses a payload that is not an object; checked again for the compiler.
    try {
      assertObject(payload, "JWT claims");
    } catch {
      throw new TokenRefusal("MALFORMED");
    }
    return payload;
  };
}

function reasonOf(error: unknown): TokenRefusal["reason"] {
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
