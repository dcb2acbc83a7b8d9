import type { FastifyRequest } from "fastify";
import { type Static, type TSchema, Type } from "typebox";
import { ValidationError } from "../errors/gatehouse-error.ts";
import { ALLOWED_ADDRESS_MAX_CHARS, MAX_ALLOWED_ADDRESSES } from "../keys/address-allowlist.ts";
import {
  MAX_PERMISSIONS,
  MAX_SCOPES,
  RATE_LIMIT_MAX,
  RATE_WINDOW_MAX_SECONDS,
  SCOPE_MAX_CHARS,
  SCOPE_PATTERN,
} from "../keys/key-rules.ts";
import { keyStatus } from "../keys/key-status.ts";
import type { ApiKeyRecord } from "../storage/types.ts";

// The limits are the domain's (src/keys/key-rules.ts): the schema answers first, with the
// same rules the key service applies to every caller.
/** Scope names: what OAuth allows in a scope token, minus the quote and backslash. */
export const ScopeName = Type.String({ minLength: 1, maxLength: SCOPE_MAX_CHARS, pattern: SCOPE_PATTERN });
export const Scopes = Type.Array(ScopeName, { maxItems: MAX_SCOPES });
export const Permissions = Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { maxItems: MAX_PERMISSIONS });
export const RateLimitBody = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: RATE_LIMIT_MAX }),
    windowSeconds: Type.Integer({ minimum: 1, maximum: RATE_WINDOW_MAX_SECONDS }),
  },
  { additionalProperties: false },
);
// A Record's key schema becomes a pattern and loses its length: `propertyNames` keeps it.
export const Metadata = Type.Record(Type.String(), Type.Unknown(), {
  maxProperties: 32,
  propertyNames: { minLength: 1, maxLength: 64 },
});
/** Where a key may be used from (keys/address-allowlist.ts checks each entry's form). */
export const AllowedAddresses = Type.Array(Type.String({ minLength: 1, maxLength: ALLOWED_ADDRESS_MAX_CHARS }), {
  minItems: 1,
  maxItems: MAX_ALLOWED_ADDRESSES,
});
export const KeyId = Type.String({ minLength: 1, maxLength: 64, pattern: "^key_[0-9a-zA-Z]+$" });
const Instant = Type.Union([Type.String(), Type.Null()]);
export const Cursor = Type.String({ minLength: 1, maxLength: 64, pattern: "^[0-9A-Za-z_]+$" });
/** `limit` in a query string: 1 to 100 (a string there; problem.ts words the refusal). */
export const LIMIT_PATTERN = "^(?:[1-9]\\d?|100)$";
export const LimitParam = Type.String({ pattern: LIMIT_PATTERN, description: "1 to 100" });

export const RateLimitState = Type.Object({
  limit: Type.Integer(),
  remaining: Type.Integer(),
  reset: Type.Integer({ description: "end of the current window, ms since the epoch" }),
});

export const KeyView = Type.Object({
  id: Type.String(),
  name: Type.String(),
  hint: Type.String({ description: "non-secret label: prefix, 4 characters, …, 4 characters" }),
  status: Type.Union([Type.Literal("active"), Type.Literal("expired"), Type.Literal("revoked")]),
  scopes: Type.Array(Type.String()),
  permissions: Type.Array(Type.String()),
  ownerId: Type.Union([Type.String(), Type.Null()]),
  metadata: Type.Union([Type.Object({}, { additionalProperties: true }), Type.Null()]),
  rateLimit: Type.Union([Type.Object({ limit: Type.Integer(), windowSeconds: Type.Integer() }), Type.Null()]),
  allowedAddresses: Type.Union([Type.Array(Type.String()), Type.Null()]),
  createdAt: Type.String(),
  expiresAt: Instant,
  revokedAt: Instant,
  revokedReason: Type.Union([Type.String(), Type.Null()]),
  replacedBy: Type.Union([Type.String(), Type.Null()]),
  rotatedFrom: Type.Union([Type.String(), Type.Null()]),
  lastUsedAt: Instant,
});

export const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

/** The public view of a key: never the secret, never its digest. */
export function keyView(record: ApiKeyRecord, now: number) {
  return {
    id: record.id,
    name: record.name,
    hint: record.hint,
    status: keyStatus(record, now),
    scopes: record.scopes,
    permissions: record.permissions,
    ownerId: record.ownerId,
    metadata: record.metadata,
    rateLimit: record.rateLimit,
    allowedAddresses: record.allowedAddresses,
    createdAt: new Date(record.createdAt).toISOString(),
    expiresAt: iso(record.expiresAt),
    revokedAt: iso(record.revokedAt),
    revokedReason: record.revokedReason,
    replacedBy: record.replacedBy,
    rotatedFrom: record.rotatedFrom,
    lastUsedAt: iso(record.lastUsedAt),
  };
}

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
  },
  { additionalProperties: true },
);

/**
 * ISO 8601 as RFC 3339 writes it: a date, or a date and time with its offset (a time
 * without one would be read in the server's own zone). Date.parse alone also takes "0"
 * (the year 2000) and other guesses.
 */
const ISO_INSTANT = /^[+-]?\d{4,6}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))?$/i;

const LAST_INSTANT = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** The year, month and day a timestamp starts with exist (Date.parse rolls 2026-02-30 over to March). */
function isCalendarDate(value: string): boolean {
  const match = /^([+-]?\d{4,6})-(\d{2})-(\d{2})/.exec(value);
  if (!match) return false;
  const [year, month, day] = [Number(match[1]), Number(match[2]), Number(match[3])];
  const date = new Date(Date.UTC(2000, month - 1, day));
  date.setUTCFullYear(year);
  return month >= 1 && month <= 12 && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

/** Parses an ISO 8601 timestamp from the query parameter `name`, or says which one is wrong. */
export function parseInstant(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const ms = ISO_INSTANT.test(value) ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms) || !isCalendarDate(value)) {
    throw new ValidationError(
      `${name} must be an ISO 8601 date, or a timestamp with its offset, e.g. 2026-01-31T00:00:00Z (in a URL, write a + offset as %2B).`,
    );
  }
  // Within years 1970–9999: every instant Gatehouse records is, and arithmetic on one
  // (a default range of a day before it) stays a date JavaScript can print.
  if (ms < 0 || ms > LAST_INSTANT) {
    throw new ValidationError(`${name} must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z.`);
  }
  return ms;
}

/**
 * Checks a value the route could not declare as its body schema (an optional body, or a
 * body parsed only after its signature verifies) with the route's own validator: Fastify's
 * Ajv, configured as for every route schema, compiled once per route and schema.
 */
export function matchesSchema<T extends TSchema>(
  request: FastifyRequest,
  schema: T,
  value: unknown,
): value is Static<T> {
  return request.compileValidationSchema(schema as Record<string, unknown>)(value) === true;
}
