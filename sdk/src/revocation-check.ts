import { endpointUnder } from "./base-url.ts";
import { MAX_ANSWER_BYTES, readBoundedText } from "./bounded-body.ts";
import { VerifierError } from "./verifier-error.ts";

/**
 * Asks Gatehouse whether a locally verified token is still good. Gatehouse has no
 * introspection endpoint (RFC 7662) yet, so this asks `GET /auth/me` with the token
 * itself: 200 while the token is live, 401 once its jti is denied (logout), its sign-in
 * revoked (logout, refresh-token theft, password change) or its user disabled. The
 * token is only ever sent to the Gatehouse named in the options, over https (or
 * loopback), never to a URL from the token.
 *
 * Anything but 200 or 401 is no verdict: a `VerifierError`, which the guards answer with
 * 503 (fail closed), as for the key verifier.
 */
export function createRevocationCheck(options: {
  baseUrl: URL;
  fetch: typeof fetch;
  timeoutMs: number;
  onRequest: () => void;
}): (token: string) => Promise<"active" | "revoked"> {
  const endpoint = endpointUnder(options.baseUrl, "auth/me");
  return async function askGatehouse(token) {
    options.onRequest();
    let response: Response;
    let text: string | null;
    try {
      response = await options.fetch(endpoint, {
        method: "GET",
        headers: { authorization: `Bearer ${token}`, accept: "application/json" },
        // A redirect would resend the token somewhere else: treat it as an error.
        redirect: "manual",
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      // Only the status matters; the body is drained (bounded) so the connection is reused.
      text = await readBoundedText(response, MAX_ANSWER_BYTES);
    } catch (cause) {
      if (cause instanceof DOMException && cause.name === "TimeoutError") {
        throw new VerifierError("TIMEOUT", `Gatehouse did not answer within ${options.timeoutMs} ms`, { cause });
      }
      throw new VerifierError("UNREACHABLE", "Gatehouse could not be reached", { cause });
    }
    // Not an answer /auth/me gives: no verdict, like any other unusable answer.
    if (text === null) {
      throw new VerifierError("INVALID_RESPONSE", `Gatehouse's answer exceeds ${MAX_ANSWER_BYTES} bytes`, {
        status: response.status,
      });
    }
    if (response.status === 200) return "active";
    if (response.status === 401) return "revoked";
    if (response.status === 429) {
      throw new VerifierError("SERVICE_RATE_LIMITED", "Gatehouse rate-limited the revocation check", {
        status: 429,
      });
    }
    if (response.status >= 500) {
      throw new VerifierError("UPSTREAM_ERROR", `Gatehouse answered ${response.status}`, { status: response.status });
    }
    throw new VerifierError("INVALID_RESPONSE", `Gatehouse answered ${response.status}`, { status: response.status });
  };
}
