import { presentedToken, type RequestLike } from "./credentials.ts";
import { assertScopes } from "./key-shape.ts";
import { type ProblemDocument, type ProblemStatus, problem } from "./problems.ts";
import { assertRealm, refuse } from "./refusal.ts";
import type { TokenVerifier } from "./token-verifier.ts";
import type { TokenFailureReason, TokenVerifyResult } from "./token-verify-result.ts";
import type { VerifiedToken } from "./verified-token.ts";
import { VerifierError } from "./verifier-error.ts";

export interface TokenGuardOptions {
  verifier: TokenVerifier;
  /** Scopes the token must hold, all of them. */
  scopes?: readonly string[];
  /** The protection space named in WWW-Authenticate (RFC 9110 §11.5). Default "api". */
  realm?: string;
}

export type TokenGuardResult =
  | { ok: true; token: VerifiedToken }
  | {
      ok: false;
      status: ProblemStatus;
      /** Includes Content-Type; send all of them with `body` as JSON. */
      headers: Record<string, string>;
      body: ProblemDocument;
      /** For a 503: why there was no verdict. Log it; never send it. */
      cause: VerifierError | null;
      /** For a refused token: which check failed. Log it; never send it. */
      reason: TokenFailureReason | null;
    };

/**
 * One body for every refused token, whatever the check that failed (RFC 8725 §3.1's
 * spirit, and STYLE 3): a client learns nothing about which part was wrong.
 */
const INVALID_TOKEN_DETAIL = "A valid access token is required: send it as `Authorization: Bearer <token>`.";
const UNAVAILABLE_RETRY_SECONDS = 5;

/** What was presented: the token, or the refusal to send when there is none to check. */
function presentedOrRefusal(request: RequestLike, realm: string): string | TokenGuardResult {
  const presented = presentedToken(request);
  if (presented.kind === "in-url") {
    return withReason(
      refuse(
        problem(
          "KEY_IN_URL",
          "Credentials must not be sent in the URL (they leak into logs and history). Send the token in the Authorization header.",
        ),
      ),
    );
  }
  if (presented.kind === "ambiguous") {
    return withReason(
      refuse(problem("AMBIGUOUS_CREDENTIALS", "Send one Authorization header, once."), {
        "www-authenticate": `Bearer realm="${realm}", error="invalid_request"`,
      }),
    );
  }
  if (presented.kind === "none") {
    // RFC 6750 §3.1: with no credential at all, the challenge carries no error code.
    return withReason(
      refuse(problem("UNAUTHENTICATED", INVALID_TOKEN_DETAIL), { "www-authenticate": `Bearer realm="${realm}"` }),
    );
  }
  return presented.token;
}

function withReason(result: ReturnType<typeof refuse>, reason: TokenFailureReason | null = null): TokenGuardResult {
  return { ...result, reason };
}

/** The verifier's verdict as a guard result: the token, or the status and problem to send. */
function guardResult(result: TokenVerifyResult, scopes: readonly string[], realm: string): TokenGuardResult {
  if (result.valid) return { ok: true, token: result.token };
  if (result.code === "INSUFFICIENT_SCOPE") {
    return withReason(
      refuse(
        problem("INSUFFICIENT_SCOPE", `This call needs the scope(s): ${scopes.join(", ")}.`, {
          requiredScopes: [...scopes],
        }),
        // RFC 6750 §3: scope is the space-delimited list the resource needs.
        { "www-authenticate": `Bearer realm="${realm}", error="insufficient_scope", scope="${scopes.join(" ")}"` },
      ),
    );
  }
  return withReason(
    refuse(problem("INVALID_TOKEN", INVALID_TOKEN_DETAIL), {
      "www-authenticate": `Bearer realm="${realm}", error="invalid_token"`,
    }),
    result.reason,
  );
}

function checkedOptions(options: TokenGuardOptions): { scopes: readonly string[]; realm: string } {
  const scopes = options.scopes ?? [];
  // Cheap for a frozen list already checked (a guard's own): see `assertScopes`.
  assertScopes(scopes);
  const realm = options.realm ?? "api";
  assertRealm(realm);
  return { scopes, realm };
}

/**
 * Decides whether a request may pass on a Gatehouse access token: reads the Bearer
 * header (and nothing else), verifies the token locally, and turns every refusal into a
 * status, headers and a problem document ready to send. Framework-free, like `guard()`.
 */
export async function guardToken(request: RequestLike, options: TokenGuardOptions): Promise<TokenGuardResult> {
  const { scopes, realm } = checkedOptions(options);
  const presented = presentedOrRefusal(request, realm);
  if (typeof presented !== "string") return presented;
  let result: TokenVerifyResult;
  try {
    result = await options.verifier.verify(presented, { scopes });
  } catch (error) {
    if (!(error instanceof VerifierError)) throw error;
    return withReason(
      refuse(
        problem("VERIFIER_UNAVAILABLE", "Credentials cannot be checked right now; retry shortly."),
        { "retry-after": String(UNAVAILABLE_RETRY_SECONDS) },
        error,
      ),
    );
  }
  return guardResult(result, scopes, realm);
}

/**
 * `guardToken`, answered at once when the verifier can answer without I/O
 * (`TokenVerifier.verifyNow`); null when `guardToken` must be awaited instead.
 */
export function guardTokenNow(request: RequestLike, options: TokenGuardOptions): TokenGuardResult | null {
  const { scopes, realm } = checkedOptions(options);
  if (!options.verifier.verifyNow) return null;
  const presented = presentedOrRefusal(request, realm);
  if (typeof presented !== "string") return presented;
  const result = options.verifier.verifyNow(presented, { scopes });
  return result === null ? null : guardResult(result, scopes, realm);
}
