import { KeyObject } from "node:crypto";
import { createRemoteJWKSet, customFetch, errors } from "jose";
import { assertObject } from "./assert.ts";
import { MAX_JWKS_BYTES, readBoundedText } from "./bounded-body.ts";
import { KID } from "./token-shape.ts";
import { TokenRefusal } from "./token-verify-result.ts";
import { VerifierError } from "./verifier-error.ts";

export interface JwksKeySourceOptions {
  jwksUri: URL;
  fetch: typeof fetch;
  clock: () => number;
  /** Keys older than this are refetched before use (jose's `cacheMaxAge`). */
  cacheMaxAgeMs: number;
  /** Least time between a fetch and a refetch caused by an unknown kid, or after a failed fetch. */
  refetchFloorMs: number;
  timeoutMs: number;
  onFetch: () => void;
}

/**
 * The keys tokens are verified with: Gatehouse's JWKS at one configured URL, and nothing
 * a token names (jku, x5u, jwk, x5c are never read: RFC 8725 §3.10). jose fetches,
 * caches and selects keys by kid and alg; this decides *when* an unknown kid may cause a
 * refetch, on the injected clock, so the floor is exact in tests. jose's own cooldown is
 * therefore off (`cooldownDuration: Infinity`: it never refetches for a missing kid by
 * itself), and its `cacheMaxAge` is the periodic refresh.
 *
 * Failing to get the JWKS is no verdict on the token: a `VerifierError` (503 from the
 * guards). A kid the JWKS does not hold is a refusal of the token (`TokenRefusal`).
 */
export function createJwksKeySource(options: JwksKeySourceOptions) {
  const { clock, refetchFloorMs } = options;
  let lastFetchAt = Number.NEGATIVE_INFINITY;
  let lastFailureAt = Number.NEGATIVE_INFINITY;

  /** jose's fetch: answers are checked here, and failures become VerifierErrors. */
  async function fetchJwks(url: string, init: RequestInit): Promise<Response> {
    const now = clock();
    // While Gatehouse is failing, every request would otherwise ask again.
    if (now - lastFailureAt < refetchFloorMs) {
      throw new VerifierError("UNREACHABLE", "The JWKS could not be fetched moments ago; not asking again yet");
    }
    lastFetchAt = now;
    options.onFetch();
    let response: Response;
    let text: string | null;
    try {
      response = await options.fetch(url, init);
      text = await readBoundedText(response, MAX_JWKS_BYTES);
    } catch (cause) {
      lastFailureAt = clock();
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        throw new VerifierError("TIMEOUT", `The JWKS did not arrive within ${options.timeoutMs} ms`, { cause });
      }
      throw new VerifierError("UNREACHABLE", "The JWKS could not be fetched", { cause });
    }
    try {
      if (response.status !== 200) throw new TypeError(`JWKS answered ${response.status}`);
      if (text === null) throw new TypeError(`JWKS exceeds ${MAX_JWKS_BYTES} bytes`);
      const body: unknown = JSON.parse(text);
      assertObject(body, "JWKS");
      if (!Array.isArray(body.keys)) throw new TypeError("JWKS.keys must be an array");
      for (const key of body.keys) assertObject(key, "JWKS.keys[]");
    } catch (cause) {
      lastFailureAt = clock();
      const code = response.status >= 500 ? "UPSTREAM_ERROR" : "INVALID_RESPONSE";
      throw new VerifierError(code, "Gatehouse did not answer with a JWK Set", { status: response.status, cause });
    }
    lastFailureAt = Number.NEGATIVE_INFINITY;
    return new Response(text, { status: 200, headers: { "content-type": "application/json" } });
  }

  const remoteKeys = createRemoteJWKSet(options.jwksUri, {
    timeoutDuration: options.timeoutMs,
    cooldownDuration: Number.POSITIVE_INFINITY,
    cacheMaxAge: options.cacheMaxAgeMs,
    [customFetch]: fetchJwks,
  });

  /** The header members that select a key: nothing else of the token reaches jose. */
  type KeyHeader = { alg: string; kid: string };

  /**
   * Keys jose selected, by kid, as node KeyObjects (what the signature check takes), so
   * a token under a kid seen before needs neither jose nor a promise (`resolveNow`). An
   * entry serves only while jose's copy of the JWKS is fresh and has not been replaced
   * since: every reload is awaited here and then bumps `generation`, which empties the
   * memo, and an entry is written only if no reload completed while it was looked up.
   * Bounded by the JWKS itself: only keys jose found are kept.
   */
  const memo = new Map<string, { alg: string; key: KeyObject }>();
  let generation = 0;
  // node's KeyObject for each key jose imported, made once (dropped with the key when jose
  // refetches): the lookups that miss the memo, such as every one at `cacheMaxAgeMs: 0`,
  // reuse it.
  const keyObjects = new WeakMap<CryptoKey, KeyObject>();

  async function reload(): Promise<void> {
    try {
      await remoteKeys.reload();
    } finally {
      generation++;
      memo.clear();
    }
  }

  async function keyFromSet(header: KeyHeader): Promise<KeyObject> {
    const seen = generation;
    let key: unknown;
    try {
      key = await remoteKeys(header);
    } catch (error) {
      if (error instanceof VerifierError) throw error;
      // No key with this kid and alg, or more than one: a token we cannot verify.
      throw new TokenRefusal("UNKNOWN_KEY", { unknownKid: error instanceof errors.JWKSNoMatchingKey });
    }
    // jose 6 imports JWKs as WebCrypto keys; anything else is a jose change to look at, not a verdict.
    if (!(key instanceof CryptoKey)) throw new TypeError("jose returned a JWKS key that is not a CryptoKey");
    let keyObject = keyObjects.get(key);
    if (keyObject === undefined) {
      keyObject = KeyObject.from(key);
      keyObjects.set(key, keyObject);
    }
    if (seen === generation) memo.set(header.kid, { alg: header.alg, key: keyObject });
    return keyObject;
  }

  return {
    /** The JWKS key for a token's `kid` and (already pinned) `alg`. */
    async resolve(header: { alg: string; kid?: unknown }): Promise<KeyObject> {
      const { alg, kid } = header;
      if (typeof kid !== "string" || !KID.test(kid)) throw new TokenRefusal("UNKNOWN_KEY");
      // Stale or never fetched: reloaded here (not inside jose's lookup), so the memo knows.
      // A failure other than ours is no key for this token, as when jose reloaded by itself.
      // With a max age of 0 jose refetches inside every lookup anyway (and `resolveNow`
      // never answers, the copy never being fresh): a reload here would fetch twice.
      if (!remoteKeys.fresh && options.cacheMaxAgeMs > 0) {
        await reload().catch((error: unknown) => {
          throw error instanceof VerifierError ? error : new TokenRefusal("UNKNOWN_KEY");
        });
      }
      try {
        return await keyFromSet({ alg, kid });
      } catch (error) {
        if (!(error instanceof TokenRefusal && error.unknownKid)) throw error;
      }
      // A kid we have not seen: Gatehouse may have rotated. Refetch, at most once per floor;
      // concurrent requests share one fetch (jose keeps one in flight).
      if (clock() - lastFetchAt < refetchFloorMs) throw new TokenRefusal("UNKNOWN_KEY");
      lastFetchAt = clock();
      await reload();
      return keyFromSet({ alg, kid });
    },
    /**
     * `resolve`, answered at once for a kid already resolved under the same `alg` from the
     * JWKS jose holds now, while that copy is fresh; null otherwise (then `resolve`).
     */
    resolveNow(header: { alg: string; kid?: unknown }): KeyObject | null {
      if (typeof header.kid !== "string" || !remoteKeys.fresh) return null;
      const known = memo.get(header.kid);
      return known !== undefined && known.alg === header.alg ? known.key : null;
    },
  };
}
