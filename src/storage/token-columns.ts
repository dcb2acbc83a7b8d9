import type { RefreshTokenRecord } from "./types.ts";

/**
 * The refresh_tokens columns in one fixed order, shared by both backends (as
 * key-columns.ts is for keys): inserts bind `tokenColumnValues` in this order, and reads
 * select these columns.
 */
export const TOKEN_COLUMNS =
  "digest, id, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at, used_at, replaced_by, revoked_at";

/**
 * The condition of a sign-in's current refresh token, still usable at `now` (the two
 * placeholders that bind it, in each backend's syntax), shared by both backends and by
 * the sign-in list and the check before one is ended, so the two cannot disagree.
 * `alias`: the table's alias with its dot, or "".
 */
export function liveTokenCondition(alias: string, now: readonly [string, string]): string {
  return `${alias}used_at IS NULL AND ${alias}revoked_at IS NULL AND ${alias}expires_at > ${now[0]} AND ${alias}family_expires_at > ${now[1]}`;
}

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
