import { createHmac, type KeyObject, timingSafeEqual, verify } from "node:crypto";
import type { SigningAlgorithm } from "../storage/types.ts";

/**
 * JWS compact serialisation (RFC 7515 §7.1) for access tokens, verified synchronously
 * with `node:crypto` on the calling thread. jose (which signs) verifies through
 * WebCrypto, whose every check is a job on libuv's thread pool, the pool argon2id fills
 * during sign-ins; and fast-jwt, measured as the alternative, hands node its key inside an
 * options object, which node 24 checks slowly (docs/auth.md "Libraries",
 * bench/jwt-libraries.ts). The cryptography is node's; what is ours is small and pinned:
 * one algorithm per key, chosen by our keyring, never by the token.
 */

/** Three unpadded base64url segments and nothing else (RFC 7515 §7.1). */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
export const MAX_TOKEN_LENGTH = 8192;

/** Why a token was refused at this layer, in our vocabulary (for the audit log only). */
export type JwsFailure = "MALFORMED" | "BAD_SIGNATURE" | "CLAIM_INVALID" | "WRONG_TYPE";

export class JwsError extends Error {
  readonly reason: JwsFailure;
  constructor(reason: JwsFailure) {
    super(`JWS refused: ${reason}`);
    this.name = "JwsError";
    this.reason = reason;
  }
}

export interface CompactJws {
  /** The protected header, a JSON object; untrusted until the signature is checked. */
  header: Record<string, unknown>;
  /** ASCII(BASE64URL(header) ‖ '.' ‖ BASE64URL(payload)): what was signed. */
  signingInput: string;
  payloadSegment: string;
  signature: Buffer;
}

function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function decodeJsonSegment(segment: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
  } catch {
    throw new JwsError("MALFORMED");
  }
  if (!isJsonObject(value)) throw new JwsError("MALFORMED");
  return value;
}

/** Splits and decodes a token in the strict compact form. Throws `JwsError("MALFORMED")`. */
export function parseCompactJws(token: string): CompactJws {
  if (token.length > MAX_TOKEN_LENGTH || !COMPACT_JWS.test(token)) throw new JwsError("MALFORMED");
  const firstDot = token.indexOf(".");
  const lastDot = token.lastIndexOf(".");
  const signatureSegment = token.slice(lastDot + 1);
  const signature = Buffer.from(signatureSegment, "base64url");
  // Canonical base64url only: no spare bits, so one signature has one spelling.
  if (signature.toString("base64url") !== signatureSegment) throw new JwsError("MALFORMED");
  return {
    header: decodeJsonSegment(token.slice(0, firstDot)),
    signingInput: token.slice(0, lastDot),
    payloadSegment: token.slice(firstDot + 1, lastDot),
    signature,
  };
}

/**
 * RFC 7518 §3: the signature under `alg` with `key`, the key's own type checked too (so
 * a key of one kind is never used for another algorithm). The key is handed to node
 * as the KeyObject itself wherever the JWS encoding is node's default.
 */
function signatureValid(alg: SigningAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  try {
    switch (alg) {
      case "RS256":
        // RSASSA-PKCS1-v1_5 with SHA-256: node's default padding for RSA keys.
        return key.asymmetricKeyType === "rsa" && verify("sha256", data, key, signature);
      case "ES256":
        // ECDSA P-256, R ‖ S (64 bytes, RFC 7518 §3.4); OpenSSL refuses r = 0 or s = 0.
        return (
          key.asymmetricKeyType === "ec" &&
          key.asymmetricKeyDetails?.namedCurve === "prime256v1" &&
          signature.length === 64 &&
          verify("sha256", data, { key, dsaEncoding: "ieee-p1363" }, signature)
        );
      case "EdDSA":
        return key.asymmetricKeyType === "ed25519" && verify(null, data, key, signature);
      case "HS256":
        return (
          key.type === "secret" &&
          signature.length === 32 &&
          timingSafeEqual(createHmac("sha256", key).update(data).digest(), signature)
        );
    }
  } catch {
    return false;
  }
}

export interface JwsPins {
  issuer: string;
  audience: string;
  /** RFC 9068 §4: `at+jwt` (also accepted as `application/at+jwt`, RFC 7515 §4.1.9). */
  typ: string;
  requiredClaims: readonly string[];
}

/**
 * Checks the signature with `key` under `alg` (both chosen by the caller from its own
 * keyring), then `typ`, `crit` (no extension is understood, RFC 7515 §4.1.11), that the
 * required claims are present, `iss` and `aud`. Time claims are the caller's, on its
 * own clock. Returns the payload; its other claims are still untrusted in shape. Throws
 * `JwsError`.
 */
export function verifyCompactJws(
  jws: CompactJws,
  key: KeyObject,
  alg: SigningAlgorithm,
  pins: JwsPins,
): Record<string, unknown> {
  if (!signatureValid(alg, key, Buffer.from(jws.signingInput, "ascii"), jws.signature)) {
    throw new JwsError("BAD_SIGNATURE");
  }
  const { typ, crit } = jws.header;
  if (typeof typ !== "string" || typ.toLowerCase().replace(/^application\//, "") !== pins.typ) {
    throw new JwsError("WRONG_TYPE");
  }
  if (crit !== undefined) throw new JwsError("MALFORMED");
  const payload = decodeJsonSegment(jws.payloadSegment);
  for (const claim of pins.requiredClaims) if (!(claim in payload)) throw new JwsError("CLAIM_INVALID");
  if (payload.iss !== pins.issuer) throw new JwsError("CLAIM_INVALID");
  const { aud } = payload;
  if (!(aud === pins.audience || (Array.isArray(aud) && aud.includes(pins.audience)))) {
    throw new JwsError("CLAIM_INVALID");
  }
  return payload;
}
