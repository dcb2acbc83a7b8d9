import { ValidationError } from "../errors/gatehouse-error.ts";
import { unstorableText } from "../lib/storable-text.ts";
import type { RateLimitPolicy } from "../storage/types.ts";
import { ALLOWED_ADDRESS_MAX_CHARS, allowedAddressProblem, MAX_ALLOWED_ADDRESSES } from "./address-allowlist.ts";
import { isPermission, PERMISSIONS } from "./permissions.ts";

/*
 * What a key's fields may hold, whichever way the key is made (HTTP, CLI, init). The HTTP
 * schemas (src/http/schemas.ts, src/http/routes/keys.ts) are built from these same limits,
 * so a key the CLI stores is one the API would have accepted.
 */

export const NAME_MAX_CHARS = 200;
export const OWNER_ID_MAX_CHARS = 200;
export const SCOPE_MAX_CHARS = 128;
export const MAX_SCOPES = 64;
export const MAX_PERMISSIONS = 32;
/**
 * Scope names: what OAuth allows in a scope token (RFC 6749 §3.3), minus the quote and
 * backslash. No spaces, so a verify request can ask for any scope a key holds.
 */
export const SCOPE_PATTERN = "^[!#-\\[\\]-~]+$";
/** SCOPE_PATTERN in words, for whoever sent a scope that does not match it. */
export const SCOPE_PATTERN_MEANING = "must be printable ASCII without spaces, quotes or backslashes";
/** A shorter life is a mistake (an expired key reported as created), not a use. */
export const MIN_LIFETIME_SECONDS = 60;
export const RATE_LIMIT_MAX = 1_000_000_000;
export const RATE_WINDOW_MAX_SECONDS = 86_400;

const scopePattern = new RegExp(SCOPE_PATTERN);

export interface KeyFields {
  name?: string;
  scopes?: readonly string[];
  permissions?: readonly string[];
  ownerId?: string | null;
  rateLimit?: RateLimitPolicy | null;
  /** Addresses and CIDR ranges; null for anywhere. An empty list would lock the key out: refused. */
  allowedAddresses?: readonly string[] | null;
  /** Seconds; null for never (the policy decides whether that is allowed). */
  expiresInSeconds?: number | null;
}

type Problem = { path: string; message: string };

/** Length, and text that storage can keep as it is (see below). */
function lengthProblem(path: string, value: string, max: number): Problem | null {
  if (value.length === 0) return { path, message: "must not be empty" };
  if (value.length > max) return { path, message: `must be at most ${max} characters` };
  const unstorable = unstorableText(value);
  return unstorable === null ? null : { path, message: unstorable };
}

function isWhole(value: number, min: number, max: number): boolean {
  return Number.isInteger(value) && value >= min && value <= max;
}

/**
 * Checks the fields that are present; throws one ValidationError naming every problem
 * (`errors[].path` is the API's field, e.g. `/scopes/1`). The maximum lifetime is the
 * policy's to check.
 */
export function assertValidKeyFields(fields: KeyFields): void {
  const problems: Problem[] = [];
  const add = (problem: Problem | null) => {
    if (problem) problems.push(problem);
  };
  if (fields.name !== undefined) add(lengthProblem("/name", fields.name, NAME_MAX_CHARS));
  if (fields.ownerId !== undefined && fields.ownerId !== null) {
    add(lengthProblem("/ownerId", fields.ownerId, OWNER_ID_MAX_CHARS));
  }
  if (fields.scopes !== undefined) {
    if (fields.scopes.length > MAX_SCOPES) add({ path: "/scopes", message: `may hold at most ${MAX_SCOPES} scopes` });
    fields.scopes.forEach((scope, i) => {
      const path = `/scopes/${i}`;
      const problem = lengthProblem(path, scope, SCOPE_MAX_CHARS);
      if (problem) add(problem);
      else if (!scopePattern.test(scope)) {
        add({ path, message: SCOPE_PATTERN_MEANING });
      }
    });
  }
  if (fields.permissions !== undefined) {
    if (fields.permissions.length > MAX_PERMISSIONS) {
      add({ path: "/permissions", message: `may hold at most ${MAX_PERMISSIONS} permissions` });
    }
    // Unknown names are refused rather than stored: a typo must not pass silently.
    const unknown = fields.permissions.filter((p) => !isPermission(p));
    if (unknown.length > 0) {
      add({
        path: "/permissions",
        message: `unknown permission(s): ${unknown.join(", ")} (known: ${PERMISSIONS.join(", ")})`,
      });
    }
  }
  if (fields.rateLimit !== undefined && fields.rateLimit !== null) {
    const { limit, windowSeconds } = fields.rateLimit;
    if (!isWhole(limit, 1, RATE_LIMIT_MAX)) {
      add({ path: "/rateLimit/limit", message: `must be a whole number from 1 to ${RATE_LIMIT_MAX}` });
    }
    if (!isWhole(windowSeconds, 1, RATE_WINDOW_MAX_SECONDS)) {
      add({
        path: "/rateLimit/windowSeconds",
        message: `must be a whole number from 1 to ${RATE_WINDOW_MAX_SECONDS}`,
      });
    }
  }
  if (fields.allowedAddresses !== undefined && fields.allowedAddresses !== null) {
    const entries = fields.allowedAddresses;
    if (entries.length === 0 || entries.length > MAX_ALLOWED_ADDRESSES) {
      add({
        path: "/allowedAddresses",
        message: `must hold 1 to ${MAX_ALLOWED_ADDRESSES} entries (null lets the key be used from anywhere)`,
      });
    }
    entries.forEach((entry, i) => {
      const path = `/allowedAddresses/${i}`;
      if (entry.length > ALLOWED_ADDRESS_MAX_CHARS) {
        add({ path, message: `must be at most ${ALLOWED_ADDRESS_MAX_CHARS} characters` });
        return;
      }
      const problem = allowedAddressProblem(entry);
      if (problem) add({ path, message: problem });
    });
  }
  const expires = fields.expiresInSeconds;
  if (expires !== undefined && expires !== null && !isWhole(expires, MIN_LIFETIME_SECONDS, Number.MAX_SAFE_INTEGER)) {
    add({
      path: "/expiresInSeconds",
      // "at least" alone misled for 1e308, which is whole and far above the minimum.
      message: `must be a whole number of seconds, from ${MIN_LIFETIME_SECONDS} to the maximum key lifetime`,
    });
  }
  if (problems.length > 0) {
    throw new ValidationError(`${problems.map((p) => `${p.path.slice(1)} ${p.message}`).join("; ")}.`, problems);
  }
}
