import { assertInteger, assertString, type JsonObject } from "./assert.ts";

/**
 * RFC 9068 §2.2 claims of a Gatehouse access token, as signed. Other claims a deployment
 * adds are kept too, untyped.
 */
export interface AccessTokenClaims {
  iss: string;
  sub: string;
  aud: string | string[];
  iat: number;
  exp: number;
  jti: string;
  scope?: string;
  client_id?: string;
  /** The sign-in (refresh token family) the token belongs to; logout ends it. */
  sid?: string;
  [claim: string]: unknown;
}

/** A verified access token: frozen, shared between requests that present the same token. */
export interface VerifiedToken {
  /** The user the token was issued to. */
  readonly sub: string;
  /** The `scope` claim split on spaces (RFC 8693 §4.2). */
  readonly scopes: readonly string[];
  readonly jti: string;
  /** Null when the token carries no `sid`. */
  readonly sid: string | null;
  /** `exp` in ms since the epoch. */
  readonly expiresAt: number;
  readonly claims: Readonly<AccessTokenClaims>;
}

/** Longest string claim accepted, like the server (src/tokens/access-token.ts). */
const MAX_CLAIM_LENGTH = 1024;

function boundedString(value: unknown, name: string): asserts value is string {
  assertString(value, name);
  if (value.length === 0 || value.length > MAX_CLAIM_LENGTH) throw new TypeError(`${name} must be 1–1024 characters`);
}

/**
 * Checks the claims of a token whose signature, `iss`, `aud` and required claims are
 * already checked (token-signature.ts; the verifier checks the times): this checks their
 * types, so nothing downstream trusts a shape it was not shown. Takes ownership of
 * `payload`, which becomes the frozen `claims`. Throws `TypeError`.
 */
export function parseVerifiedClaims(payload: JsonObject): VerifiedToken {
  const { iss, sub, aud, iat, exp, jti, scope, client_id: clientId, sid } = payload;
  boundedString(iss, "iss");
  boundedString(sub, "sub");
  boundedString(jti, "jti");
  assertInteger(iat, "iat");
  assertInteger(exp, "exp");
  if (typeof aud !== "string" && !(Array.isArray(aud) && aud.every((item) => typeof item === "string"))) {
    throw new TypeError("aud must be a string or an array of strings");
  }
  if (scope !== undefined) assertString(scope, "scope");
  if (clientId !== undefined) boundedString(clientId, "client_id");
  if (sid !== undefined) boundedString(sid, "sid");
  // The payload is this call's own (parsed from the token just now), so it becomes the
  // claims as it is, without a copy.
  const claims = payload as AccessTokenClaims;
  deepFreeze(claims);
  return Object.freeze({
    sub,
    scopes: Object.freeze(typeof scope === "string" ? scope.split(" ").filter((item) => item.length > 0) : []),
    jti,
    sid: typeof sid === "string" ? sid : null,
    expiresAt: exp * 1000,
    claims,
  });
}

/**
 * Frozen once when cached, so a route cannot change what the next request sees. Claims
 * are nearly all strings and numbers: only the objects among them (an `aud` list, a
 * deployment's own structured claims) are walked.
 */
function deepFreeze(value: object): void {
  if (Object.isFrozen(value)) return;
  Object.freeze(value);
  for (const member of Object.values(value)) {
    if (typeof member === "object" && member !== null) deepFreeze(member);
  }
}
