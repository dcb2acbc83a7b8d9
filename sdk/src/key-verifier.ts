import { isIP } from "node:net";
import { endpointUnder, gatehouseURL } from "./base-url.ts";
import { MAX_ANSWER_BYTES, readBoundedText } from "./bounded-body.ts";
import { assertScopes, hasKeyShape } from "./key-shape.ts";
import { PositiveCache } from "./positive-cache.ts";
import { parseRetryAfter } from "./retry-after.ts";
import { VerifierError } from "./verifier-error.ts";
import { parseVerifyAnswer, type VerifyResult } from "./verify-result.ts";

export interface KeyVerifierOptions {
  /** Where Gatehouse listens, e.g. `https://auth.internal.example`. */
  baseUrl: string | URL;
  /** A Gatehouse key holding the `keys:verify` permission. */
  serviceKey: string;
  /**
   * How long a valid answer may be reused on this process, in ms. Default 0: off, every
   * request asks Gatehouse. See the README before turning it on: a revoked key keeps
   * working here for up to this long.
   */
  cacheTtlMs?: number;
  /** Most keys the cache holds; the least recently used go first. Default 10 000. */
  cacheMaxEntries?: number;
  /** Replaces the global fetch (tests count requests with it; proxies, mTLS agents). */
  fetch?: typeof fetch;
  /** Gives up on Gatehouse after this many ms. Default 2000. */
  timeoutMs?: number;
  /** Ms since the epoch; injected by tests to move cache time by hand. */
  clock?: () => number;
  /**
   * Allows `http:` to a host other than loopback. The service key and every presented
   * key would cross the network in clear text: only for a private network you trust.
   */
  allowInsecureHttp?: boolean;
}

export interface VerifyOptions {
  /** Scopes the key must hold, all of them. */
  scopes?: readonly string[];
  /**
   * The IP address the key's client called from. A key bound to addresses in Gatehouse
   * (`allowedAddresses`) is refused (`ADDRESS_NOT_ALLOWED`) from any other, and when this
   * is omitted. The guards pass it for you.
   */
  address?: string;
}

export interface KeyVerifier {
  /**
   * Asks Gatehouse whether `key` is valid and holds `scopes`. A refused key is an
   * answer (`valid: false` with a code); only failing to reach a verdict throws
   * (`VerifierError`).
   */
  verify(key: string, options?: VerifyOptions): Promise<VerifyResult>;
}

const DEFAULT_TIMEOUT_MS = 2000;
const DEFAULT_CACHE_MAX_ENTRIES = 10_000;
/** Gatehouse refuses longer keys with a 400; they are MALFORMED whatever they hold. */
const MAX_KEY_LENGTH = 512;

export function createKeyVerifier(options: KeyVerifierOptions): KeyVerifier {
  const endpoint = verifyEndpoint(options);
  if (typeof options.serviceKey !== "string" || options.serviceKey.length === 0) {
    throw new TypeError("serviceKey must be a Gatehouse key with the keys:verify permission");
  }
  const authorization = `Bearer ${options.serviceKey}`;
  const fetchImpl = options.fetch ?? globalThis.fetch;
  const timeoutMs = positiveInteger(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, "timeoutMs");
  const clock = options.clock ?? Date.now;
  const ttlMs = nonNegativeInteger(options.cacheTtlMs ?? 0, "cacheTtlMs");
  const cache =
    ttlMs > 0
      ? new PositiveCache({
          ttlMs,
          maxEntries: positiveInteger(options.cacheMaxEntries ?? DEFAULT_CACHE_MAX_ENTRIES, "cacheMaxEntries"),
          clock,
        })
      : null;

  async function ask(key: string, scopes: readonly string[], address: string | undefined): Promise<VerifyResult> {
    let response: Response;
    let text: string | null;
    try {
      response = await fetchImpl(endpoint, {
        method: "POST",
        headers: { authorization, "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ key, ...(scopes.length > 0 ? { scopes } : {}), ...(address ? { address } : {}) }),
        // A redirect would resend the presented key somewhere else: treat it as an error.
        redirect: "manual",
        signal: AbortSignal.timeout(timeoutMs),
      });
      text = await readBoundedText(response, MAX_ANSWER_BYTES);
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        throw new VerifierError("TIMEOUT", `Gatehouse did not answer within ${timeoutMs} ms`, { cause });
      }
      throw new VerifierError("UNREACHABLE", "Gatehouse could not be reached", { cause });
    }
    const status = response.status;
    // An oversized body is no answer Gatehouse gives: for a 200 no verdict, otherwise no problem document.
    if (text === null && status === 200) {
      throw new VerifierError("INVALID_RESPONSE", `Gatehouse's answer exceeds ${MAX_ANSWER_BYTES} bytes`, {
        status,
      });
    }
    const body = text === null ? null : parseJson(text);
    if (status === 200) {
      try {
        return parseVerifyAnswer(body);
      } catch (cause) {
        throw new VerifierError("INVALID_RESPONSE", "Gatehouse's answer does not match the verify API", {
          status,
          cause,
        });
      }
    }
    const retryAfterSeconds = parseRetryAfter(response.headers.get("retry-after"), clock());
    const details = { status, retryAfterSeconds, problem: body };
    if (status === 401) {
      throw new VerifierError(
        "SERVICE_KEY_REJECTED",
        "Gatehouse refused the service key (401): it is unknown, revoked, expired or mistyped",
        details,
      );
    }
    if (status === 403) {
      const problem = body as { code?: unknown; detail?: unknown } | null;
      if (problem?.code === "ADDRESS_NOT_ALLOWED") {
        // Gatehouse's detail names the address it saw: the operator's first question.
        const said = typeof problem.detail === "string" ? ` ${problem.detail}` : "";
        throw new VerifierError(
          "SERVICE_KEY_REJECTED",
          `Gatehouse refused the service key (403 ADDRESS_NOT_ALLOWED): it is bound to addresses (allowedAddresses) that do not include this host's.${said}`,
          details,
        );
      }
      throw new VerifierError(
        "SERVICE_KEY_REJECTED",
        "Gatehouse refused the service key (403): it lacks the keys:verify permission",
        details,
      );
    }
    if (status === 429) {
      if ((details.problem as { limitedBy?: unknown } | null)?.limitedBy === "address") {
        throw new VerifierError(
          "ADDRESS_BLOCKED",
          "Gatehouse braked this host's address after many different keys failed from it; it ends by itself",
          details,
        );
      }
      throw new VerifierError("SERVICE_RATE_LIMITED", "The service key's own rate limit is spent", details);
    }
    if (status >= 500) throw new VerifierError("UPSTREAM_ERROR", `Gatehouse answered ${status}`, details);
    throw new VerifierError("INVALID_RESPONSE", `Gatehouse answered ${status}`, details);
  }

  return {
    async verify(key, verifyOptions = {}) {
      const scopes = verifyOptions.scopes ?? [];
      assertScopes(scopes);
      const address = verifyOptions.address;
      if (address !== undefined && isIP(address) === 0) throw new TypeError("address must be an IPv4 or IPv6 address");
      // Junk is answered here: no round trip, and Gatehouse's 400 for oversized keys never happens.
      if (typeof key !== "string" || key.length > MAX_KEY_LENGTH || !hasKeyShape(key)) {
        return { valid: false, code: "MALFORMED", ratelimit: null };
      }
      // Cached per key and address: a valid answer for one address says nothing about
      // another (the key may be bound to addresses; the SDK is not told which).
      const hit = cache?.get(key, address);
      // A hit answers only if the cached scopes cover the request; otherwise Gatehouse
      // decides (the key may have gained the scope since) and counts the refusal.
      if (hit && scopes.every((scope) => hit.scopes.includes(scope))) {
        return { ...hit, scopes: [...hit.scopes], valid: true, ratelimit: null, cached: true };
      }
      const result = await ask(key, scopes, address);
      if (cache) {
        if (result.valid) {
          cache.set(key, address, {
            keyId: result.keyId,
            ownerId: result.ownerId,
            scopes: [...result.scopes],
            expiresAt: result.expiresAt,
          });
        } else cache.delete(key, address);
      }
      return result;
    },
  };
}

function verifyEndpoint(options: KeyVerifierOptions): URL {
  const base = gatehouseURL(options.baseUrl, "baseUrl", { allowInsecureHttp: options.allowInsecureHttp === true });
  return endpointUnder(base, "v1/keys/verify");
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new TypeError(`${name} must be a positive integer`);
  return value;
}

function nonNegativeInteger(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new TypeError(`${name} must be an integer ≥ 0`);
  return value;
}
