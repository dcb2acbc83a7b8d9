import type { AuditEventInput, SessionRecord, SessionRepository } from "../types.ts";
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";
import { revokeUserRefreshTokens } from "./token-repository.ts";

type Row = Record<string, string | number | Uint8Array | null>;

const COLUMNS =
  "digest, id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, revoked_at, ip, user_agent";

function rowToSession(row: Row): SessionRecord {
  return {
    digest: Buffer.from(row.digest as Uint8Array),
    id: row.id as string,
    userId: row.user_id as string,
    createdAt: row.created_at as number,
    lastSeenAt: row.last_seen_at as number,
    expiresAt: row.expires_at as number,
    idleExpiresAt: row.idle_expires_at as number,
    revokedAt: row.revoked_at as number | null,
    ip: row.ip as string | null,
    userAgent: row.user_agent as string | null,
  };
}

/** Revokes the user's active sessions except `keepId`; the caller owns the transaction. */
export function revokeUserSessions(
  database: SqliteDatabase,
  userId: string,
  at: number,
  keepId: string | null,
): number {
  return Number(
    database
      .statement("UPDATE sessions SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?")
      .run(at, userId, keepId).changes,
  );
}

export class SqliteSessionRepository implements SessionRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async insert(record: SessionRecord, replaces: Buffer | null, audit: AuditEventInput | null): Promise<void> {
    this.database.transaction(() => {
      if (replaces) {
        this.database
          .statement("UPDATE sessions SET revoked_at = ? WHERE digest = ? AND revoked_at IS NULL")
          .run(record.createdAt, replaces);
      }
      this.database
        .statement(`INSERT INTO sessions (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
        .run(
          record.digest,
          record.id,
          record.userId,
          record.createdAt,
          record.lastSeenAt,
          record.expiresAt,
          record.idleExpiresAt,
          record.revokedAt,
          record.ip,
          record.userAgent,
        );
      if (audit) insertAuditEvent(this.database, audit);
    });
  }

  async findByDigest(digest: Buffer): Promise<SessionRecord | null> {
    const row = this.database.statement(`SELECT ${COLUMNS} FROM sessions WHERE digest = ?`).get(digest) as
      | Row
      | undefined;
    return row ? rowToSession(row) : null;
  }

  async touch(id: string, at: number, idleExpiresAt: number): Promise<void> {
    this.database
      .statement(
        "UPDATE sessions SET last_seen_at = ?, idle_expires_at = ? WHERE id = ? AND revoked_at IS NULL AND last_seen_at < ?",
      )
      .run(at, idleExpiresAt, id, at);
  }

  async listForUser(userId: string, now: number): Promise<SessionRecord[]> {
    const rows = this.database
      .statement(
        `SELECT ${COLUMNS} FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? AND idle_expires_at > ? ORDER BY id DESC`,
      )
      .all(userId, now, now) as Row[];
    return rows.map(rowToSession);
  }

  async revoke(userId: string, id: string, at: number, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(() => {
      const result = this.database
        .statement("UPDATE sessions SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
        .run(at, id, userId);
      if (result.changes === 0) return false;
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async revokeAllForUser(userId: string, at: number, audit: AuditEventInput | null): Promise<number> {
    return this.database.transaction(() => {
      const count = revokeUserSessions(this.database, userId, at, null);
      revokeUserRefreshTokens(this.database, userId, at, null);
      if (audit) insertAuditEvent(this.database, audit);
      return count;
    });
  }
}
