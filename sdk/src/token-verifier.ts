import type { KeyObject } from "node:crypto";
import type { JsonObject } from "./assert.ts";
import { gatehouseURL } from "./base-url.ts";
import { createJwksKeySource } from "./jwks-key-source.ts";
import { assertScopes } from "./key-shape.ts";
import { RevocationAnswers } from "./revocation-answers.ts";
import { createRevocationCheck } from "./revocation-check.ts";
import { hasCompactShape, withinTokenLength } from "./token-shape.ts";
import { createSignatureCheck, hs256Secret, parseCompactJws } from "./token-signature.ts";
import { failureOf, type TokenFailureReason, TokenRefusal, type TokenVerifyResult } from "./token-verify-result.ts";
import { parseVerifiedClaims, type VerifiedToken } from "./verified-token.ts";
import { type CachedToken, VerifiedTokenCache } from "./verified-token-cache.ts";
import { VerifierError } from "./verifier-error.ts";

/** Algorithms Gatehouse signs access tokens with. Symmetric ones never: a JWKS publishes no secrets. */
export const TOKEN_ALGORITHMS = ["RS256", "ES256", "EdDSA"] as const;
export type TokenAlgorithm = (typeof TOKEN_ALGORITHMS)[number];

export interface TokenVerifierOptions {
  /** Gatehouse's issuer (`GATEHOUSE_ISSUER`), compared exactly with `iss`. */
  issuer: string;
  /** The `aud` this API accepts (`GATEHOUSE_JWT_AUDIENCE`, by default the issuer). */
  audience: string | readonly string[];
  /** Default `<issuer>/.well-known/jwks.json`. https, or http to loopback only. */
  jwksUri?: string | URL;
  /**
   * The algorithms a token may use. Pinned here, never read from the token or the JWKS.
   * Default `["RS256"]`, Gatehouse's default.
   */
  algorithms?: readonly TokenAlgorithm[];
  /**
   * For a Gatehouse that signs with HS256 (`GATEHOUSE_JWT_ALG=HS256`): its secret, the
   * value of `GATEHOUSE_JWT_HS256_SECRET` (base64 or base64url, at least 256 bits). Then
   * HS256 is the only algorithm accepted, with this secret only, and no JWKS is fetched;
   * `algorithms` and `jwksUri` must not be set. Whoever holds the secret can mint tokens:
   * give it only to services you would trust with Gatehouse's own signing key.
   */
  hs256Secret?: string | Uint8Array;
  /** Leeway for clocks that disagree, on exp, nbf and iat. Default 5, at most 60. */
  clockToleranceSeconds?: number;
  /**
   * Oldest `iat` accepted, and longest lifetime (`exp - iat`) a token may claim. Default
   * 3600: the longest Gatehouse issues (`GATEHOUSE_ACCESS_TOKEN_SECONDS` ≤ 3600).
   */
  maxTokenAgeSeconds?: number;
  jwks?: {
    /**
     * Keys older than this are refetched before use. Default 300 000 (5 min, the JWKS
     * response's own max-age): also how long a key removed from the JWKS keeps verifying here.
     */
    cacheMaxAgeMs?: number;
    /**
     * Least time between two JWKS fetches caused by an unknown kid (or after a failed
     * fetch). Default 30 000. A token with a new kid inside the floor is refused, so a
     * stream of forged kids costs Gatehouse at most one request per floor.
     */
    refetchFloorMs?: number;
    /** Default 5000. */
    timeoutMs?: number;
  };
  /**
   * Off by default. When set, Gatehouse is asked whether each token is still accepted
   * (logout, revoked sign-in, disabled user), and the answer reused for `ttlMs`.
   */
  revocationCheck?: {
    /** Where Gatehouse answers `GET /auth/me`. Default: the issuer. */
    baseUrl?: string | URL;
    /** How long a "still accepted" answer is reused: the revocation delay. Default 5000; 0 asks on every request. */
    ttlMs?: number;
    /** Default 2000. */
    timeoutMs?: number;
  };
  /** Verified tokens kept, least recently used dropped first. Default 10 000; 0 turns the cache off. */
  cache?: { maxEntries: number };
  /** Replaces the global fetch for the JWKS and the revocation check. */
  fetch?: typeof fetch;
  /** Ms since the epoch: expiry, the JWKS refetch floor and revocation TTLs all read it. */
  clock?: () => number;
  /** Allows `http:` to a host other than loopback for the JWKS and revocation check. */
  allowInsecureHttp?: boolean;
}

export interface TokenVerifyOptions {
  /** Scopes the token must hold, all of them. */
  scopes?: readonly string[];
}

/** Counters since the verifier was created, for metrics and tests. */
export interface TokenVerifierStats {
  /** Tokens answered from the cache of verified tokens. */
  cacheHits: number;
  /** Tokens whose signature was checked (not answered from the cache). */
  signatureChecks: number;
  /** Requests for the JWKS (including failed ones). */
  jwksFetches: number;
  /** Requests to Gatehouse's revocation check. */
  revocationChecks: number;
}

export interface TokenVerifier {
  /**
   * Verifies a Gatehouse access token locally. A refused token is an answer (`valid:
   * false`); only failing to reach a verdict (JWKS or revocation check unavailable)
   * throws a `VerifierError`, and caller mistakes throw a `TypeError`.
   */
  verify(token: string, options?: TokenVerifyOptions): Promise<TokenVerifyResult>;
  /**
   * `verify`, answered at once when no I/O is needed (a token in the verified-token cache,
   * any token with `hs256Secret`, or a token whose kid this verifier has already resolved
   * from the JWKS it holds now), and with no revocation check configured; null otherwise,
   * and then `verify` must be called. The guards use it to skip the promises of the
   * common case. Same checks, same answers.
   */
  verifyNow?(token: string, options?: TokenVerifyOptions): TokenVerifyResult | null;
  readonly stats: Readonly<TokenVerifierStats>;
}

const DEFAULTS = {
  clockToleranceSeconds: 5,
  maxClockToleranceSeconds: 60,
  maxTokenAgeSeconds: 3600,
  jwksCacheMaxAgeMs: 300_000,
  jwksRefetchFloorMs: 30_000,
  jwksTimeoutMs: 5000,
  revocationTtlMs: 5000,
  revocationTimeoutMs: 2000,
  cacheMaxEntries: 10_000,
} as const;

export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  if (typeof options.issuer !== "string" || options.issuer.length === 0) {
    throw new TypeError("issuer must be Gatehouse's issuer URL (GATEHOUSE_ISSUER)");
  }
  const audience = typeof options.audience === "string" ? options.audience : [...(options.audience ?? [])];
  if (audience.length === 0 || (Array.isArray(audience) && !audience.every((item) => typeof item === "string"))) {
    throw new TypeError("audience must be the aud this API accepts (GATEHOUSE_JWT_AUDIENCE)");
  }
  const secret = options.hs256Secret === undefined ? null : hs256Secret(options.hs256Secret);
  if (secret && (options.algorithms !== undefined || options.jwksUri !== undefined)) {
    throw new TypeError("hs256Secret pins HS256 and needs no JWKS: leave algorithms and jwksUri unset");
  }
  const algorithms = secret ? [] : [...(options.algorithms ?? ["RS256"])];
  if (
    !secret &&
    (algorithms.length === 0 || !algorithms.every((alg) => (TOKEN_ALGORITHMS as readonly string[]).includes(alg)))
  ) {
    throw new TypeError(
      `algorithms must be some of ${TOKEN_ALGORITHMS.join(", ")} (for HS256, pass hs256Secret instead)`,
    );
  }
  const clockTolerance = integerIn(
    options.clockToleranceSeconds ?? DEFAULTS.clockToleranceSeconds,
    0,
    DEFAULTS.maxClockToleranceSeconds,
    "clockToleranceSeconds",
  );
  const maxTokenAge = integerIn(
    options.maxTokenAgeSeconds ?? DEFAULTS.maxTokenAgeSeconds,
    1,
    86_400,
    "maxTokenAgeSeconds",
  );
  const insecure = { allowInsecureHttp: options.allowInsecureHttp === true };
  const issuerBase = options.issuer.replace(/\/+$/, "");
  const jwksUri = gatehouseURL(options.jwksUri ?? `${issuerBase}/.well-known/jwks.json`, "jwksUri", insecure);
  const cacheMaxAgeMs = integerIn(
    options.jwks?.cacheMaxAgeMs ?? DEFAULTS.jwksCacheMaxAgeMs,
    0,
    86_400_000,
    "jwks.cacheMaxAgeMs",
  );
  const floorMs = integerIn(
    options.jwks?.refetchFloorMs ?? DEFAULTS.jwksRefetchFloorMs,
    0,
    86_400_000,
    "jwks.refetchFloorMs",
  );
  const jwksTimeoutMs = integerIn(options.jwks?.timeoutMs ?? DEFAULTS.jwksTimeoutMs, 1, 60_000, "jwks.timeoutMs");
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const clock = options.clock ?? Date.now;
  const maxEntries = integerIn(
    options.cache?.maxEntries ?? DEFAULTS.cacheMaxEntries,
    0,
    10_000_000,
    "cache.maxEntries",
  );
  const cache = maxEntries > 0 ? new VerifiedTokenCache({ maxEntries }) : null;
  const stats: TokenVerifierStats = { cacheHits: 0, signatureChecks: 0, jwksFetches: 0, revocationChecks: 0 };

  const revocation = options.revocationCheck;
  const revocationTtlMs = revocation
    ? integerIn(revocation.ttlMs ?? DEFAULTS.revocationTtlMs, 0, 3_600_000, "revocationCheck.ttlMs")
    : 0;
  // Bounded like the cache's default, and kept even when the cache is off, so that ttlMs
  // holds either way.
  const revocationAnswers = revocation ? new RevocationAnswers({ maxEntries: DEFAULTS.cacheMaxEntries }) : null;
  const askGatehouse = revocation
    ? createRevocationCheck({
        baseUrl: gatehouseURL(revocation.baseUrl ?? issuerBase, "revocationCheck.baseUrl", insecure),
        fetch: fetchImpl,
        timeoutMs: integerIn(
          revocation.timeoutMs ?? DEFAULTS.revocationTimeoutMs,
          1,
          60_000,
          "revocationCheck.timeoutMs",
        ),
        onRequest: () => {
          stats.revocationChecks++;
        },
      })
    : null;

  const keys = secret
    ? null
    : createJwksKeySource({
        jwksUri,
        fetch: fetchImpl,
        clock,
        cacheMaxAgeMs,
        refetchFloorMs: floorMs,
        timeoutMs: jwksTimeoutMs,
        onFetch: () => {
          stats.jwksFetches++;
        },
      });

  const checkSignature = createSignatureCheck({
    issuer: options.issuer,
    audience,
    typ: "at+jwt",
    requiredClaims: ["iss", "aud", "exp", "iat", "sub", "jti"],
  });

  async function verifySignature(token: string, now: number): Promise<VerifiedToken | TokenFailureReason> {
    if (secret) return verifyWithSecret(token, secret, now);
    stats.signatureChecks++;
    let payload: JsonObject;
    try {
      const jws = parseCompactJws(token);
      const { header } = jws;
      // The algorithm is pinned before any key is looked up (RFC 8725 §3.1): alg none,
      // HS256 keyed with the public key, PS256 with an RSA key never get further.
      const alg = pinnedAlgorithm(header.alg);
      if (alg === undefined || keys === null) throw new TokenRefusal("ALG_NOT_ALLOWED");
      const key = await keys.resolve({ alg, kid: header.kid });
      payload = checkSignature.withKey(jws, key, alg);
    } catch (error) {
      if (error instanceof VerifierError) throw error;
      return failureOf(error);
    }
    return checkedClaims(payload, now);
  }

  function pinnedAlgorithm(alg: unknown): TokenAlgorithm | undefined {
    return algorithms.find((allowed) => allowed === alg);
  }

  /**
   * `verifySignature` without a promise, for a token whose key is already in hand (a kid
   * seen before, from the JWKS as it is now): the same checks in the same order, so the
   * same answers. Null when the key is not in hand (or the alg is not allowed: the
   * asynchronous way words that refusal), and then `verifySignature` must answer.
   */
  function verifyWithKnownKey(token: string, now: number): VerifiedToken | TokenFailureReason | null {
    if (keys === null) return null;
    let payload: JsonObject;
    try {
      const jws = parseCompactJws(token);
      const alg = pinnedAlgorithm(jws.header.alg);
      const key = alg === undefined ? null : keys.resolveNow({ alg, kid: jws.header.kid });
      if (alg === undefined || key === null) return null;
      stats.signatureChecks++;
      payload = checkSignature.withKey(jws, key, alg);
    } catch (error) {
      // Only refusals come from here (no I/O, so no VerifierError); a bug is not an answer.
      if (!(error instanceof TokenRefusal)) throw error;
      return error.reason;
    }
    return checkedClaims(payload, now);
  }

  /** HS256 with the one configured secret: synchronous, nothing to fetch. */
  function verifyWithSecret(
    token: string,
    hs256: { key: KeyObject; kid: string },
    now: number,
  ): VerifiedToken | TokenFailureReason {
    stats.signatureChecks++;
    let payload: JsonObject;
    try {
      const jws = parseCompactJws(token);
      const { header } = jws;
      // Any other alg (none, an asymmetric one) or another secret's kid is refused before
      // the HMAC.
      if (header.alg !== "HS256") throw new TokenRefusal("ALG_NOT_ALLOWED");
      if (header.kid !== hs256.kid) throw new TokenRefusal("UNKNOWN_KEY");
      payload = checkSignature.withSecret(jws, hs256.key);
    } catch (error) {
      return failureOf(error);
    }
    return checkedClaims(payload, now);
  }

  function checkedClaims(payload: JsonObject, now: number): VerifiedToken | TokenFailureReason {
    let verified: VerifiedToken;
    try {
      verified = parseVerifiedClaims(payload);
    } catch {
      return "CLAIM_INVALID";
    }
    return checkTimes(verified, payload.nbf, Math.floor(now / 1000)) ?? verified;
  }

  /**
   * RFC 7519 §4.1.4-6 on the verifier's clock, in whole seconds with the tolerance: not
   * expired, not before `nbf`, not issued in the future, not older than `maxTokenAge`,
   * and not claiming to live longer than Gatehouse issues tokens.
   */
  function checkTimes(verified: VerifiedToken, nbf: unknown, now: number): TokenFailureReason | null {
    const { iat, exp } = verified.claims;
    if (nbf !== undefined && typeof nbf !== "number") return "CLAIM_INVALID";
    if (exp <= now - clockTolerance) return "EXPIRED";
    if (nbf !== undefined && nbf > now + clockTolerance) return "NOT_YET_VALID";
    if (iat > now + clockTolerance) return "NOT_YET_VALID";
    if (now - iat - clockTolerance > maxTokenAge) return "EXPIRED";
    if (exp - iat > maxTokenAge) return "CLAIM_INVALID";
    return null;
  }

  /** The verdict on an entry that passed every check, against the route's scopes. */
  function verdict(entry: CachedToken, scopes: readonly string[], cached: boolean): TokenVerifyResult {
    const missingScopes = scopes.filter((scope) => !entry.token.scopes.includes(scope));
    if (missingScopes.length > 0) {
      return { valid: false, code: "INSUFFICIENT_SCOPE", token: entry.token, missingScopes };
    }
    return { valid: true, token: entry.token, cached };
  }

  return {
    get stats() {
      return { ...stats };
    },
    verifyNow(token, verifyOptions = {}) {
      // A revocation check is a request to Gatehouse: never answered at once.
      if (askGatehouse) return null;
      const scopes = verifyOptions.scopes ?? [];
      assertScopes(scopes);
      if (!withinTokenLength(token)) return { valid: false, code: "INVALID_TOKEN", reason: "MALFORMED" };
      const now = clock();
      const hit = cache?.get(token, now) ?? null;
      if (hit) {
        stats.cacheHits++;
        return verdict(hit, scopes, true);
      }
      if (!hasCompactShape(token)) return { valid: false, code: "INVALID_TOKEN", reason: "MALFORMED" };
      const verified = secret ? verifyWithSecret(token, secret, now) : verifyWithKnownKey(token, now);
      if (verified === null) return null;
      if (typeof verified === "string") return { valid: false, code: "INVALID_TOKEN", reason: verified };
      const entry: CachedToken = { token: verified };
      cache?.set(token, entry, now);
      return verdict(entry, scopes, false);
    },
    async verify(token, verifyOptions = {}) {
      const scopes = verifyOptions.scopes ?? [];
      assertScopes(scopes);
      if (!withinTokenLength(token)) return { valid: false, code: "INVALID_TOKEN", reason: "MALFORMED" };
      const now = clock();
      let entry: CachedToken | null = cache?.get(token, now) ?? null;
      const cached = entry !== null;
      if (entry) {
        // Only tokens that passed every check are cached, so the shape needs no second look.
        stats.cacheHits++;
      } else {
        if (!hasCompactShape(token)) return { valid: false, code: "INVALID_TOKEN", reason: "MALFORMED" };
        const verified = await verifySignature(token, now);
        if (typeof verified === "string") return { valid: false, code: "INVALID_TOKEN", reason: verified };
        entry = { token: verified };
        cache?.set(token, entry, now);
      }
      if (askGatehouse && revocationAnswers) {
        let known = revocationAnswers.get(token, entry.token, clock());
        if (known === null || (known.state === "active" && clock() >= known.until)) {
          const answer = await askGatehouse(token);
          known = answer === "active" ? { state: "active", until: clock() + revocationTtlMs } : { state: "revoked" };
          revocationAnswers.set(token, entry.token, known, clock());
        }
        if (known.state === "revoked") return { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" };
      }
      return verdict(entry, scopes, cached);
    },
  };
}

function integerIn(value: number, min: number, max: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new TypeError(`${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}
