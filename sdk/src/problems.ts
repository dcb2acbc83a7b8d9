/**
 * Every problem the guard answers with (RFC 9457), its status and title: one registry,
 * listed in the README's table; sdk/test/problems.test.ts keeps the two in step.
 * Codes are the contract; titles and details are for people.
 */
export const PROBLEMS = {
  KEY_IN_URL: { status: 400, title: "Credentials must not be sent in the URL" },
  AMBIGUOUS_CREDENTIALS: { status: 400, title: "More than one credential was sent" },
  UNAUTHENTICATED: { status: 401, title: "Authentication is required" },
  INVALID_TOKEN: { status: 401, title: "The access token is not valid" },
  INSUFFICIENT_SCOPE: { status: 403, title: "The credential lacks a scope this call needs" },
  ADDRESS_NOT_ALLOWED: { status: 403, title: "The key may not be used from this address" },
  RATE_LIMITED: { status: 429, title: "Too many requests" },
  VERIFIER_UNAVAILABLE: { status: 503, title: "Credentials cannot be checked right now" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ProblemCode = keyof typeof PROBLEMS;
export type ProblemStatus = (typeof PROBLEMS)[ProblemCode]["status"];

export interface ProblemDocument {
  type: string;
  title: string;
  status: ProblemStatus;
  detail: string;
  code: ProblemCode;
  [extension: string]: unknown;
}

export function problem(code: ProblemCode, detail: string, extensions: Record<string, unknown> = {}): ProblemDocument {
  const { status, title } = PROBLEMS[code];
  // Extensions first, so none can overwrite a standard member (RFC 9457 §3.2).
  return { ...extensions, type: `urn:gatehouse:error:${code}`, title, status, detail, code };
}
