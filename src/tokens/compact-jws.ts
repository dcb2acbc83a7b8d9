import type { KeyObject } from "node:crypto";
import { hasCompactShape } from "../../sdk/src/token-shape.ts";
import {
  type CompactJws,
  type SignaturePins,
  parseCompactJws as splitCompactJws,
  verifySignedJws,
} from "../../sdk/src/token-signature.ts";
import { TokenRefusal } from "../../sdk/src/token-verify-result.ts";
import type { SigningAlgorithm } from "../storage/types.ts";

/**
 * JWS compact serialisation (RFC 7515 §7.1) for access tokens, verified synchronously
 * with `node:crypto` on the calling thread. The checks are the SDK's own
 * (sdk/src/token-signature.ts), so the server and every resource server refuse exactly
 * the same tokens; this file only puts them in the server's vocabulary. Why not jose or
 * fast-jwt for verification: docs/auth.md "Libraries", bench/jwt-libraries.ts. What is
 * pinned: one algorithm per key, chosen by our keyring, never by the token.
 */

/** Why a token was refused at this layer, in our vocabulary (for the audit log only). */
export type JwsFailure =
  | "MALFORMED"
  | "BAD_SIGNATURE"
  | "WRONG_ISSUER"
  | "WRONG_AUDIENCE"
  | "CLAIM_INVALID"
  | "WRONG_TYPE";

const JWS_FAILURES: readonly string[] = [
  "BAD_SIGNATURE",
  "WRONG_ISSUER",
  "WRONG_AUDIENCE",
  "CLAIM_INVALID",
  "WRONG_TYPE",
] satisfies JwsFailure[];

export class JwsError extends Error {
  readonly reason: JwsFailure;
  constructor(reason: JwsFailure) {
    super(`JWS refused: ${reason}`);
    this.name = "JwsError";
    this.reason = reason;
  }
}

export type JwsPins = SignaturePins & { audience: string };

function asJwsError(error: unknown): unknown {
  if (!(error instanceof TokenRefusal)) return error;
  const reason = error.reason;
  return new JwsError(JWS_FAILURES.includes(reason) ? (reason as JwsFailure) : "MALFORMED");
}

/**
 * Splits and decodes a token in the strict compact form: three unpadded base64url
 * segments, bounded in length, a canonical signature. Throws `JwsError("MALFORMED")`.
 */
export function parseCompactJws(token: string): CompactJws {
  if (!hasCompactShape(token)) throw new JwsError("MALFORMED");
  try {
    return splitCompactJws(token);
  } catch (error) {
    throw asJwsError(error);
  }
}

/**
 * Checks the signature with `key` under `alg` (both chosen by the caller from its own
 * keyring), then `typ`, `crit`, the required claims, `iss` and `aud`. Time claims are the
 * caller's, on its own clock. Returns the payload; throws `JwsError`.
 */
export function verifyCompactJws(
  jws: CompactJws,
  key: KeyObject,
  alg: SigningAlgorithm,
  pins: JwsPins,
): Record<string, unknown> {
  try {
    return verifySignedJws(jws, key, alg, pins);
  } catch (error) {
    throw asJwsError(error);
  }
}
