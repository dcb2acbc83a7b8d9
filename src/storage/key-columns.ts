import type { ApiKeyRecord, InheritedKeyFields } from "./types.ts";

/**
 * The api_keys columns in one fixed order, shared by both backends: inserts bind
 * `keyColumnValues` in this order, and SQLite reads rows back as arrays in it.
 */
export const KEY_COLUMNS =
  "digest, id, name, hint, scopes, permissions, owner_id, metadata, rate_limit, rate_window_seconds, created_at, expires_at, revoked_at, revoked_reason, replaced_by, rotated_from, last_used_at, allowed_addresses";

export const KEY_COLUMN_COUNT = 18;

/**
 * KEY_COLUMNS for reads that show a key (by id, lists), with `last_used_at` as it really
 * is: the usage log's latest valid use (key_usage.last_at, written with the per-minute
 * counts; one write per key and minute instead of two), or, once the log has been purged,
 * the time housekeeping folded into api_keys.last_used_at. The verification lookup reads
 * the plain column: it never shows lastUsedAt.
 */
export const KEY_COLUMNS_WITH_LAST_USE = KEY_COLUMNS.replace(
  "last_used_at",
  `coalesce((SELECT u.last_at FROM key_usage u WHERE u.key_id = api_keys.id AND u.outcome = 'VALID'
     ORDER BY u.bucket DESC LIMIT 1), api_keys.last_used_at) AS last_used_at`,
);

/** A record as column values (JSON columns as text), in KEY_COLUMNS order. */
export function keyColumnValues(record: ApiKeyRecord): Array<string | number | Buffer | null> {
  return [
    record.digest,
    record.id,
    record.name,
    record.hint,
    JSON.stringify(record.scopes),
    JSON.stringify(record.permissions),
    record.ownerId,
    record.metadata === null ? null : JSON.stringify(record.metadata),
    record.rateLimit?.limit ?? null,
    record.rateLimit?.windowSeconds ?? null,
    record.createdAt,
    record.expiresAt,
    record.revokedAt,
    record.revokedReason,
    record.replacedBy,
    record.rotatedFrom,
    record.lastUsedAt,
    record.allowedAddresses === null ? null : JSON.stringify(record.allowedAddresses),
  ];
}

const INHERITED = [
  "name",
  "scopes",
  "permissions",
  "ownerId",
  "metadata",
  "rateLimit",
  "allowedAddresses",
] as const satisfies ReadonlyArray<keyof InheritedKeyFields>;

/**
 * Whether a key still holds exactly the values in `holding` (KeyRepository.rotate), as
 * both backends read them back: each field compared as JSON.
 */
export function holdsInherited(record: InheritedKeyFields, holding: InheritedKeyFields): boolean {
  return INHERITED.every((field) => JSON.stringify(record[field]) === JSON.stringify(holding[field]));
}

/** Whether a key holds exactly these permissions (KeyRepository's `holding`), in the same order. */
export function holdsPermissions(record: Pick<ApiKeyRecord, "permissions">, permissions: readonly string[]): boolean {
  return JSON.stringify(record.permissions) === JSON.stringify(permissions);
}
