import type { RefreshTokenRecord } from "./types.ts";

/**
 * The refresh_tokens columns in one fixed order, shared by both backends (as
 * key-columns.ts is for keys): inserts bind `tokenColumnValues` in this order, and reads
 * select these columns.
 */
export const TOKEN_COLUMNS =
  "digest, id, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at, used_at, replaced_by, revoked_at";

/** A record as column values, in TOKEN_COLUMNS order. */
export function tokenColumnValues(record: RefreshTokenRecord): Array<string | number | Buffer | null> {
  return [
    record.digest,
    record.id,
    record.familyId,
    record.userId,
    record.clientId,
    record.scope,
    record.createdAt,
    record.familyExpiresAt,
    record.expiresAt,
    record.usedAt,
    record.replacedBy,
    record.revokedAt,
  ];
}
