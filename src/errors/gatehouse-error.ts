import { ERROR_CODES, type ErrorCode } from "./codes.ts";

/**
 * Base of every error Gatehouse raises on purpose. `code` is stable and documented;
 * `detail` is safe to show to the client; `cause` (if any) stays server-side.
 */
export class GatehouseError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string;
  /** Extra members of the problem document (RFC 9457 §3.2), e.g. validation errors. */
  readonly extensions: Record<string, unknown> | undefined;
  /** Extra response headers, e.g. WWW-Authenticate or Retry-After. */
  readonly headers: Record<string, string> | undefined;

  constructor(
    code: ErrorCode,
    detail: string,
    options: {
      cause?: unknown;
      extensions?: Record<string, unknown>;
      headers?: Record<string, string>;
    } = {},
  ) {
    super(detail, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "GatehouseError";
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.detail = detail;
    this.extensions = options.extensions;
    this.headers = options.headers;
  }
}

export class ValidationError extends GatehouseError {
  /** Each problem by field (a JSON pointer into the input); empty when only `detail` says it. */
  readonly errors: ReadonlyArray<{ path: string; message: string }>;

  constructor(detail: string, errors?: Array<{ path: string; message: string }>) {
    super("VALIDATION_FAILED", detail, errors ? { extensions: { errors } } : {});
    this.name = "ValidationError";
    this.errors = errors ?? [];
  }
}

export class NotFoundError extends GatehouseError {
  constructor(detail = "No such resource.") {
    super("NOT_FOUND", detail);
    this.name = "NotFoundError";
  }
}

export class ConflictError extends GatehouseError {
  constructor(detail: string) {
    super("CONFLICT", detail);
    this.name = "ConflictError";
  }
}

const NO_KEY = "A valid API key is required: send it as `Authorization: Bearer <key>`.";
/** One text for every refused key (malformed, unknown, revoked, expired): no oracle. */
const REFUSED_KEY =
  "The API key sent was not accepted: it is mistyped, unknown to this store, revoked or expired (the audit log, action auth.api_key, says which).";

/**
 * Every authentication failure says the same thing: the audit log keeps the reason. The
 * challenge names `invalid_token` when a credential was sent and refused, and no error
 * when none was (RFC 6750 §3.1).
 */
export class UnauthenticatedError extends GatehouseError {
  constructor(detail?: string, options: { refused?: boolean } = {}) {
    super("UNAUTHENTICATED", detail ?? (options.refused ? REFUSED_KEY : NO_KEY), {
      headers: {
        "www-authenticate": options.refused
          ? 'Bearer realm="gatehouse", error="invalid_token"'
          : 'Bearer realm="gatehouse"',
      },
    });
    this.name = "UnauthenticatedError";
  }
}

export class ForbiddenError extends GatehouseError {
  constructor(missing: readonly string[]) {
    super("FORBIDDEN", `This call needs the permission(s): ${missing.join(", ")}.`, {
      extensions: { missingPermissions: missing },
    });
    this.name = "ForbiddenError";
  }
}

export class AddressNotAllowedError extends GatehouseError {
  constructor(address: string) {
    super(
      "ADDRESS_NOT_ALLOWED",
      `This key may only be used from the addresses in its allowedAddresses, and this request came from ${address}.`,
    );
    this.name = "AddressNotAllowedError";
  }
}

/** What ran out, in the words of the answer: a client must know whether to slow down or fix its key. */
export type RateLimitedBy = "key" | "address" | "sign-in" | "sign-up";

const RATE_LIMITED_BY: Record<RateLimitedBy, string> = {
  key: "This key's rate limit is used up",
  address:
    "Too many failed authentications from this address: different keys, as in guessing (keys it used successfully lately still work)",
  "sign-in": "Too many failed sign-ins",
  "sign-up": "Too many sign-ups from this address",
};

export class RateLimitedError extends GatehouseError {
  constructor(retryAfterSeconds: number, by: RateLimitedBy, headers: Record<string, string> = {}) {
    super("RATE_LIMITED", `${RATE_LIMITED_BY[by]}; retry in ${retryAfterSeconds} s.`, {
      headers: { ...headers, "retry-after": String(retryAfterSeconds) },
      // Which limit, for clients that react differently (the SDK tells an operator whether
      // its service key's own limit is spent or its address is braked).
      extensions: { limitedBy: by },
    });
    this.name = "RateLimitedError";
  }
}

export class StorageUnavailableError extends GatehouseError {
  constructor(cause?: unknown) {
    super("STORAGE_UNAVAILABLE", "Storage is unavailable; retry shortly.", {
      cause,
      headers: { "retry-after": "1" },
    });
    this.name = "StorageUnavailableError";
  }
}

/**
 * Work that waits its turn (argon2id hashes) has a queue of bounded length: past it, the
 * request is refused at once rather than answered many seconds later. Also a PostgreSQL
 * deadlock that came back on every retry: nothing was written, and trying again is right.
 */
export class BusyError extends GatehouseError {
  constructor(detail: string, retryAfterSeconds = 1, cause?: unknown) {
    super("BUSY", `${detail} Retry in ${retryAfterSeconds} s.`, {
      cause,
      headers: { "retry-after": String(retryAfterSeconds) },
    });
    this.name = "BusyError";
  }
}

/** Failed sign-in: one answer whether the account is unknown, disabled, or the password wrong. */
export class InvalidCredentialsError extends GatehouseError {
  constructor() {
    super("INVALID_CREDENTIALS", "The email or password is not right.");
    this.name = "InvalidCredentialsError";
  }
}

/**
 * Any access token (or session) that does not verify: RFC 6750 §3.1 `invalid_token`,
 * with no hint of which check failed; the audit log keeps that.
 */
export class InvalidTokenError extends GatehouseError {
  constructor() {
    super("INVALID_TOKEN", "The access token or session is missing, expired, revoked or not valid.", {
      headers: { "www-authenticate": 'Bearer realm="gatehouse", error="invalid_token"' },
      extensions: { error: "invalid_token" },
    });
    this.name = "InvalidTokenError";
  }
}

/** RFC 6749 §5.2 `invalid_grant` for a refresh token that is unknown, spent, expired or revoked. */
export class InvalidGrantError extends GatehouseError {
  constructor() {
    super("INVALID_GRANT", "The refresh token is not valid; sign in again.", {
      extensions: { error: "invalid_grant" },
    });
    this.name = "InvalidGrantError";
  }
}

/** The detail says which part of the check failed: each is fixed differently. */
export class CsrfError extends GatehouseError {
  constructor(detail: string) {
    super("CSRF_FAILED", detail);
    this.name = "CsrfError";
  }
}

export class PasswordRejectedError extends GatehouseError {
  /** TOO_SHORT, TOO_LONG, TOO_COMMON, NOT_TEXT: safe to log, unlike the password. */
  readonly reason: string;

  constructor(reason: string, detail: string) {
    super("PASSWORD_REJECTED", detail, { extensions: { reason } });
    this.name = "PasswordRejectedError";
    this.reason = reason;
  }
}
