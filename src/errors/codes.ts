/**
 * The registry of every error code Gatehouse answers with, its HTTP status and a
 * title. Codes are the contract: clients switch on `code`, never on a message.
 * docs/errors.md lists the same codes; test/errors/registry.test.ts keeps them in step.
 */
export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, title: "The request is not valid" },
  MALFORMED_JSON: { status: 400, title: "The request body is not valid JSON" },
  KEY_IN_URL: { status: 400, title: "Credentials must not be sent in the URL" },
  UNAUTHENTICATED: { status: 401, title: "Authentication is required" },
  FORBIDDEN: { status: 403, title: "The credential lacks a permission this call needs" },
  ADDRESS_NOT_ALLOWED: { status: 403, title: "The key may not be used from this address" },
  NOT_FOUND: { status: 404, title: "No such resource" },
  METHOD_NOT_ALLOWED: { status: 405, title: "Method not allowed" },
  CONFLICT: { status: 409, title: "The resource is not in a state that allows this" },
  REQUEST_TIMEOUT: { status: 408, title: "The request did not arrive in time" },
  PAYLOAD_TOO_LARGE: { status: 413, title: "The request body is too large" },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported content type" },
  SIGNATURE_INVALID: { status: 401, title: "The request signature does not verify" },
  INVALID_CREDENTIALS: { status: 401, title: "The email or password is not right" },
  INVALID_TOKEN: { status: 401, title: "The access token is not valid" },
  INVALID_GRANT: { status: 400, title: "The refresh token is not valid" },
  CSRF_FAILED: { status: 403, title: "The request failed the cross-site request check" },
  PASSWORD_REJECTED: { status: 400, title: "The password does not meet the password policy" },
  RATE_LIMITED: { status: 429, title: "Too many requests" },
  HEADERS_TOO_LARGE: { status: 431, title: "The request headers are too large" },
  INTERNAL: { status: 500, title: "Internal error" },
  STORAGE_UNAVAILABLE: { status: 503, title: "Storage is unavailable" },
  BUSY: { status: 503, title: "Gatehouse is too busy to take this request now" },
  UPSTREAM_UNAVAILABLE: { status: 503, title: "A service Gatehouse depends on did not answer" },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;
