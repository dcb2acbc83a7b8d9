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
 * Checks the claims jose has already verified the signature of. jose checks iss, aud,
 * exp, nbf and iat and that sub and jti are present; this checks their types, so nothing
 * downstream trusts a shape it was not shown. Throws `TypeError`.
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
  const claims: AccessTokenClaims = { ...payload, iss, sub, aud, iat, exp, jti };
  return deepFreeze({
    sub,
    scopes: typeof scope === "string" ? scope.split(" ").filter((item) => item.length > 0) : [],
    jti,
    sid: typeof sid === "string" ? sid : null,
    expiresAt: exp * 1000,
    claims,
  });
}

/** Frozen once when cached, so a route cannot change what the next request sees. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const member of Object.values(value)) deepFreeze(member);
  }
  return value;
}
