import { createHash, createHmac, createSecretKey, type KeyObject, timingSafeEqual, verify } from "node:crypto";
import { assertObject, type JsonObject } from "./assert.ts";
import type { TokenAlgorithm } from "./token-verifier.ts";
import { TokenRefusal } from "./token-verify-result.ts";

/**
 * The signature check of an access token, synchronous, with `node:crypto` on the calling
 * thread. jose (which fetches and selects the JWKS keys) verifies through WebCrypto:
 * every check a job on libuv's thread pool, and in a Fastify server about 50 µs more CPU
 * per token than a direct `crypto.verify`. fast-jwt, measured as the alternative, hands
 * node its key inside an options object, which node 24 checks slowly (docs/auth.md
 * "Libraries"). The cryptography is node's; what is ours is small and pinned: the
 * algorithm comes from `algorithms`, the key from the JWKS, and the key's type must
 * match the algorithm. The Gatehouse server checks its own tokens with this same module
 * (src/tokens/compact-jws.ts), so the two sides cannot drift apart.
 */

/** What the signature check knows: the SDK's algorithms, and HS256 for the server's own keyring. */
export type JwsAlgorithm = TokenAlgorithm | "HS256";

/** A token in the strict compact form (already checked by `hasCompactShape`), split and decoded. */
export interface CompactJws {
  /** The protected header; untrusted until the signature is checked. */
  header: JsonObject;
  signingInput: string;
  payloadSegment: string;
  signature: Buffer;
}

function decodeJsonSegment(segment: string, name: string): JsonObject {
  try {
    const value: unknown = JSON.parse(Buffer.from(segment, "base64url").toString("utf8"));
    assertObject(value, name);
    return value;
  } catch {
    throw new TokenRefusal("MALFORMED");
  }
}

/**
 * Parsed headers by their exact text. Every token one key signs has the same header, so
 * decoding and parsing it again for each first-seen token was waste. Bounded: a flood of
 * distinct headers empties it, costing no more than having no cache. Frozen, because one
 * parsed header serves many tokens.
 */
const parsedHeaders = new Map<string, JsonObject>();
const PARSED_HEADERS_MAX = 64;

function headerOf(segment: string): JsonObject {
  let header = parsedHeaders.get(segment);
  if (header === undefined) {
    header = Object.freeze(decodeJsonSegment(segment, "JWS header"));
    if (parsedHeaders.size >= PARSED_HEADERS_MAX) parsedHeaders.clear();
    parsedHeaders.set(segment, header);
  }
  return header;
}

/** Throws `TokenRefusal("MALFORMED")`. */
export function parseCompactJws(token: string): CompactJws {
  const firstDot = token.indexOf(".");
  const lastDot = token.lastIndexOf(".");
  const signatureSegment = token.slice(lastDot + 1);
  const signature = Buffer.from(signatureSegment, "base64url");
  // Canonical base64url only: no spare bits, so one signature has one spelling.
  if (firstDot <= 0 || firstDot === lastDot || signature.toString("base64url") !== signatureSegment) {
    throw new TokenRefusal("MALFORMED");
  }
  return {
    header: headerOf(token.slice(0, firstDot)),
    signingInput: token.slice(0, lastDot),
    payloadSegment: token.slice(firstDot + 1, lastDot),
    signature,
  };
}

/**
 * RFC 7518 §3.3, §3.4 and RFC 8037: the signature under `alg` with `key`, the key's own
 * type checked too. The KeyObject itself goes to node wherever the JWS encoding is node's
 * default (an options object costs node 24 several µs of failed brand checks).
 */
function signatureValid(alg: JwsAlgorithm, key: KeyObject, data: Buffer, signature: Buffer): boolean {
  try {
    switch (alg) {
      case "RS256":
        // RSASSA-PKCS1-v1_5 with SHA-256: node's default padding for RSA keys.
        return key.asymmetricKeyType === "rsa" && verify("sha256", data, key, signature);
      case "ES256":
        // ECDSA P-256, R ‖ S (64 bytes); OpenSSL refuses r = 0 or s = 0 (CVE-2022-21449).
        return (
          key.asymmetricKeyType === "ec" &&
          key.asymmetricKeyDetails?.namedCurve === "prime256v1" &&
          signature.length === 64 &&
          verify("sha256", data, { key, dsaEncoding: "ieee-p1363" }, signature)
        );
      case "EdDSA":
        return key.asymmetricKeyType === "ed25519" && verify(null, data, key, signature);
      case "HS256":
        // Only the server's own secret keys; a JWKS never publishes one (RFC 7518 §3.2).
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

/** What a token must satisfy besides its signature, fixed when the verifier is created. */
export interface SignaturePins {
  issuer: string;
  audience: string | readonly string[];
  /** RFC 9068 §4: `at+jwt` (also accepted as `application/at+jwt`, RFC 7515 §4.1.9). */
  typ: string;
  requiredClaims: readonly string[];
}

/**
 * Checks a token's signature with `key` under `alg` (both chosen by the caller, never by
 * the token), then its `typ`, `crit` (no extension is understood, RFC 7515 §4.1.11),
 * that the required claims are present, `iss` and `aud`. Time claims are the caller's, on
 * its own clock. Returns the payload; throws `TokenRefusal`.
 */
export function verifySignedJws(jws: CompactJws, key: KeyObject, alg: JwsAlgorithm, pins: SignaturePins): JsonObject {
  if (!signatureValid(alg, key, Buffer.from(jws.signingInput, "ascii"), jws.signature)) {
    throw new TokenRefusal("BAD_SIGNATURE");
  }
  const { typ, crit } = jws.header;
  if (typeof typ !== "string" || typ.toLowerCase().replace(/^application\//, "") !== pins.typ) {
    throw new TokenRefusal("WRONG_TYPE");
  }
  if (crit !== undefined) throw new TokenRefusal("MALFORMED");
  const payload = decodeJsonSegment(jws.payloadSegment, "JWT claims");
  for (const claim of pins.requiredClaims) if (!(claim in payload)) throw new TokenRefusal("CLAIM_INVALID");
  if (payload.iss !== pins.issuer) throw new TokenRefusal("WRONG_ISSUER");
  const audiences = typeof pins.audience === "string" ? [pins.audience] : pins.audience;
  const { aud } = payload;
  const named = typeof aud === "string" ? [aud] : Array.isArray(aud) ? aud : [];
  if (!named.some((item) => typeof item === "string" && audiences.includes(item))) {
    throw new TokenRefusal("WRONG_AUDIENCE");
  }
  return payload;
}

/** The least HS256 secret Gatehouse accepts: 256 bits (RFC 7518 §3.2 asks for at least the hash size). */
export const HS256_MIN_SECRET_BYTES = 32;

/**
 * The kid of an HS256 secret, as Gatehouse names it in its tokens: a hash of the secret,
 * which tells which secret signed a token without revealing it. One function for the
 * server's keyring and the SDK, so the two cannot name a secret differently.
 */
export function hs256KeyId(secret: Uint8Array): string {
  return createHash("sha256").update("gatehouse hs256 kid\0").update(secret).digest("base64url").slice(0, 22);
}

/**
 * The text of `GATEHOUSE_JWT_HS256_SECRET`: base64 or base64url (one alphabet, not a mix),
 * as bytes; null when it is neither. One decoder for the server's setting and the SDK's
 * `hs256Secret`, so a secret means the same bytes to both.
 */
export function decodeHs256Secret(text: string): Buffer | null {
  if (/^[A-Za-z0-9+/]+={0,2}$/.test(text) || /^[A-Za-z0-9_-]+$/.test(text)) {
    return Buffer.from(text, /[+/=]/.test(text) ? "base64" : "base64url");
  }
  return null;
}

/**
 * An HS256 secret given as Gatehouse's setting is (`GATEHOUSE_JWT_HS256_SECRET`: base64 or
 * base64url), or as bytes. Throws a TypeError below 256 bits.
 */
export function hs256Secret(value: string | Uint8Array): { key: KeyObject; kid: string } {
  // Trimmed as Gatehouse trims its setting: `openssl rand -base64 32 > file` ends in a newline.
  const bytes = typeof value === "string" ? (decodeHs256Secret(value.trim()) ?? Buffer.alloc(0)) : Buffer.from(value);
  if (bytes.length < HS256_MIN_SECRET_BYTES) {
    throw new TypeError(
      `hs256Secret must be base64 or base64url text (like GATEHOUSE_JWT_HS256_SECRET) or bytes, of at least ${HS256_MIN_SECRET_BYTES} bytes (256 bits)`,
    );
  }
  return { key: createSecretKey(bytes), kid: hs256KeyId(bytes) };
}

/** `verifySignedJws` with the verifier's pins, fixed once. */
export function createSignatureCheck(pins: SignaturePins) {
  // The audience list made once, not per token.
  const pinned: SignaturePins = {
    ...pins,
    audience: typeof pins.audience === "string" ? [pins.audience] : [...pins.audience],
  };

  return {
    /** A JWKS key (as the key source hands it over) under the pinned `alg`. */
    withKey(jws: CompactJws, key: KeyObject, alg: TokenAlgorithm): JsonObject {
      return verifySignedJws(jws, key, alg, pinned);
    },
    /** HS256 with the shared secret (never from a JWKS). */
    withSecret(jws: CompactJws, secret: KeyObject): JsonObject {
      return verifySignedJws(jws, secret, "HS256", pinned);
    },
  };
}
