import { clientAddress, type PresentedCredential, presentedCredential, type RequestLike } from "./credentials.ts";
import { assertScopes } from "./key-shape.ts";
import type { KeyVerifier } from "./key-verifier.ts";
import { type ProblemDocument, type ProblemStatus, problem } from "./problems.ts";
import { assertRealm, refuse } from "./refusal.ts";
import { secondsUntil } from "./retry-after.ts";
import { VerifierError } from "./verifier-error.ts";
import type { RateLimitState, VerifiedKey, VerifyResult } from "./verify-result.ts";

export interface GuardOptions {
  verifier: KeyVerifier;
  /** Scopes the key must hold, all of them. */
  scopes?: readonly string[];
  /** The protection space named in WWW-Authenticate (RFC 9110 §11.5). Default "api". */
  realm?: string;
  /** Ms since the epoch, for RateLimit and Retry-After arithmetic. */
  clock?: () => number;
  /**
   * The client's IP address, for keys bound to addresses. Default: the request's `ip`
   * (Fastify, Express: mind their proxy trust settings) or its socket's peer (node:http).
   * Fetch API requests (Hono) carry none: pass it, e.g. from Hono's `getConnInfo`.
   */
  address?: string;
}

export type GuardResult =
  | {
      ok: true;
      key: VerifiedKey;
      /** RateLimit headers to send with the response (none when answered from the cache). */
      headers: Record<string, string>;
    }
  | {
      ok: false;
      status: ProblemStatus;
      /** Includes Content-Type; send all of them with `body` as JSON. */
      headers: Record<string, string>;
      body: ProblemDocument;
      /** For a 503: why Gatehouse gave no verdict. Log it; never send it. */
      cause: VerifierError | null;
    };

/** One body for every 401, so a client cannot tell an unknown key from a revoked one. */
const UNAUTHENTICATED_DETAIL = "A valid API key is required: send it as `Authorization: Bearer <key>` or `X-API-Key`.";
/** Retry-After for a 503 when Gatehouse named no delay. */
const UNAVAILABLE_RETRY_SECONDS = 5;

/**
 * Decides whether a request may pass: finds the presented key, asks Gatehouse, and
 * turns every refusal into a status, headers and a problem document ready to send.
 * Framework-free; see the README for Express, Hono and node:http, and `./fastify.ts`.
 * Fails closed: when Gatehouse cannot be asked, the answer is 503, never a pass.
 */
export async function guard(request: RequestLike, options: GuardOptions): Promise<GuardResult> {
  const scopes = options.scopes ?? [];
  assertScopes(scopes);
  const realm = options.realm ?? "api";
  assertRealm(realm);
  const clock = options.clock ?? Date.now;

  const presented: PresentedCredential = presentedCredential(request);
  if (presented.kind === "in-url") {
    return refuse(
      problem(
        "KEY_IN_URL",
        "Credentials must not be sent in the URL (they leak into logs and history). Send the key in the Authorization header, and rotate it now: this request put it in URL logs on its way here.",
      ),
    );
  }
  if (presented.kind === "ambiguous") {
    return refuse(
      problem(
        "AMBIGUOUS_CREDENTIALS",
        "Send one key, once: one `Authorization: Bearer <key>` header or `X-API-Key`, not both.",
      ),
      // RFC 6750 §3.1: more than one method is an invalid_request.
      { "www-authenticate": `Bearer realm="${realm}", error="invalid_request"` },
    );
  }
  if (presented.kind === "none") {
    // RFC 6750 §3.1: with no credential at all, the challenge carries no error code.
    return refuse(problem("UNAUTHENTICATED", UNAUTHENTICATED_DETAIL), {
      "www-authenticate": `Bearer realm="${realm}"`,
    });
  }

  const address = options.address ?? clientAddress(request);
  let result: VerifyResult;
  try {
    result = await options.verifier.verify(presented.key, { scopes, ...(address ? { address } : {}) });
  } catch (error) {
    if (!(error instanceof VerifierError)) throw error;
    const retry = error.retryAfterSeconds !== null && error.retryAfterSeconds > 0 ? error.retryAfterSeconds : null;
    return refuse(
      problem("VERIFIER_UNAVAILABLE", "Credentials cannot be checked right now; retry shortly."),
      { "retry-after": String(retry ?? UNAVAILABLE_RETRY_SECONDS) },
      error,
    );
  }

  const now = clock();
  if (result.valid) {
    const { keyId, ownerId, scopes: held, expiresAt } = result;
    return {
      ok: true,
      key: { keyId, ownerId, scopes: held, expiresAt },
      headers: rateLimitHeaders(result.ratelimit, now),
    };
  }
  switch (result.code) {
    case "MALFORMED":
    case "NOT_FOUND":
    case "EXPIRED":
    case "REVOKED":
      return refuse(problem("UNAUTHENTICATED", UNAUTHENTICATED_DETAIL), {
        "www-authenticate": `Bearer realm="${realm}", error="invalid_token"`,
      });
    case "ADDRESS_NOT_ALLOWED":
      // The key is right and the place is wrong: no challenge would help, so none is sent.
      // The address is the caller's own as seen here: a proxy's address in it tells the
      // operator that the framework's proxy trust is not set.
      return refuse(
        problem(
          "ADDRESS_NOT_ALLOWED",
          address
            ? `This key may not be used from this address (${address}): its owner bound it to others.`
            : "This key may not be used from here: it is bound to addresses, and this request's address is unknown.",
        ),
      );
    case "INSUFFICIENT_SCOPE":
      return refuse(
        problem("INSUFFICIENT_SCOPE", `This call needs the scope(s): ${scopes.join(", ")}.`, {
          requiredScopes: [...scopes],
        }),
        {
          // RFC 6750 §3: scope is the space-delimited list the resource needs.
          "www-authenticate": `Bearer realm="${realm}", error="insufficient_scope", scope="${scopes.join(" ")}"`,
          ...rateLimitHeaders(result.ratelimit, now),
        },
      );
    case "RATE_LIMITED": {
      const seconds = result.ratelimit ? Math.max(1, secondsUntil(result.ratelimit.reset, now)) : 1;
      return refuse(problem("RATE_LIMITED", `This key is over its rate limit; retry in ${seconds} s.`), {
        ...rateLimitHeaders(result.ratelimit, now),
        "retry-after": String(seconds),
      });
    }
  }
}

/**
 * draft-ietf-httpapi-ratelimit-headers: `RateLimit-Policy: "key";q=<quota>` and
 * `RateLimit: "key";r=<remaining>;t=<seconds to reset>`. Gatehouse's answer does not
 * carry the window length, so the policy has no `w` rather than a guessed one.
 */
export function rateLimitHeaders(state: RateLimitState | null, now: number): Record<string, string> {
  if (state === null) return {};
  return {
    "ratelimit-policy": `"key";q=${state.limit}`,
    ratelimit: `"key";r=${state.remaining};t=${secondsUntil(state.reset, now)}`,
  };
}
