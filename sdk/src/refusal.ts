import type { ProblemDocument } from "./problems.ts";
import type { VerifierError } from "./verifier-error.ts";

const REALM = /^[ !#-[\]-~]{1,128}$/;

/** A refusal ready to send: the problem's status, its headers, the document, and why (never sent). */
export function refuse(
  body: ProblemDocument,
  headers: Record<string, string> = {},
  cause: VerifierError | null = null,
) {
  return {
    ok: false as const,
    status: body.status,
    headers: { "content-type": "application/problem+json", "cache-control": "no-store", ...headers },
    body,
    cause,
  };
}

/** The last realm that passed: nearly always the same one, call after call. */
let checkedRealm: string | null = null;

/** The realm goes inside a quoted-string of WWW-Authenticate (RFC 9110 §11.5), so no quote or backslash. */
export function assertRealm(realm: string): void {
  if (checkedRealm !== null && realm === checkedRealm) return;
  if (typeof realm !== "string" || !REALM.test(realm)) {
    throw new TypeError('realm must be 1–128 visible ASCII characters or spaces, without " or \\');
  }
  checkedRealm = realm;
}
