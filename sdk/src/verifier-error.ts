/**
 * Why a verification could not be answered. None of these says anything about the key
 * that was presented: they are about reaching Gatehouse, so the guard answers all of
 * them with 503 and never lets the request through (fail closed).
 */
export type VerifierErrorCode =
  /** Network failure: refused, reset, DNS. */
  | "UNREACHABLE"
  /** No answer within `timeoutMs`. */
  | "TIMEOUT"
  /**
   * Gatehouse refused the service key: 401 when it is unknown, revoked, expired or
   * mistyped, 403 when it lacks the `keys:verify` permission (`status` and the message say which).
   */
  | "SERVICE_KEY_REJECTED"
  /** The service key itself is over its rate limit (429). */
  | "SERVICE_RATE_LIMITED"
  /**
   * Gatehouse braked this host's address (429) after many different keys failed from it
   * within a minute; it ends by itself (`retryAfterSeconds`). Not the service key's limit.
   */
  | "ADDRESS_BLOCKED"
  /** Gatehouse answered 5xx. */
  | "UPSTREAM_ERROR"
  /** Any other status, or a body that does not match the documented answer. */
  | "INVALID_RESPONSE";

export class VerifierError extends Error {
  readonly code: VerifierErrorCode;
  /** Gatehouse's HTTP status, or null when no answer arrived. */
  readonly status: number | null;
  /** Seconds Gatehouse asked us to wait (its Retry-After), when it said. */
  readonly retryAfterSeconds: number | null;
  /** Gatehouse's problem document, kept out of enumeration so it stays out of logs by default. */
  declare readonly problem: unknown;

  constructor(
    code: VerifierErrorCode,
    message: string,
    options: { status?: number; retryAfterSeconds?: number | null; problem?: unknown; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "VerifierError";
    this.code = code;
    this.status = options.status ?? null;
    this.retryAfterSeconds = options.retryAfterSeconds ?? null;
    Object.defineProperty(this, "problem", { value: options.problem, enumerable: false });
  }
}
