import type DataLoader from "dataloader";
import type { AuditEventInput, SessionRecord, SessionRepository } from "../types.ts";
import { insertAuditEvents } from "./audit-repository.ts";
import { batchedRows } from "./batched-statement.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";
import { revokeUserRefreshTokens } from "./token-repository.ts";

const COLUMNS =
  "digest, id, user_id, created_at, last_seen_at, expires_at, idle_expires_at, revoked_at, ip, user_agent";

interface Row {
  digest: Buffer;
  id: string;
  user_id: string;
  created_at: number;
  last_seen_at: number;
  expires_at: number;
  idle_expires_at: number;
  revoked_at: number | null;
  ip: string | null;
  user_agent: string | null;
}

function toSession(row: Row): SessionRecord {
  return {
    digest: row.digest,
    id: row.id,
    userId: row.user_id,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    expiresAt: row.expires_at,
    idleExpiresAt: row.idle_expires_at,
    revokedAt: row.revoked_at,
    ip: row.ip,
    userAgent: row.user_agent,
  };
}

/** Revokes the user's active sessions except `keepId`; the caller owns the transaction. */
export async function revokeUserSessions(
  client: Queryable,
  userId: string,
  at: number,
  keepId: string | null,
): Promise<number> {
  const result = await client.query(
    "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id IS DISTINCT FROM $3",
    [at, userId, keepId],
  );
  return result.rowCount ?? 0;
}

export class PostgresSessionRepository implements SessionRepository {
  private readonly database: PostgresDatabase;
  /** Every cookie-authenticated request reads its session: batched (batched-statement.ts). */
  private readonly byDigest: DataLoader<Buffer, SessionRecord | null>;

  constructor(database: PostgresDatabase) {
    this.database = database;
    this.byDigest = batchedRows(
      database,
      `SELECT ${COLUMNS} FROM sessions WHERE digest = ANY($1::bytea[])`,
      { of: (digest: Buffer) => digest.toString("base64"), ofRow: (row: Row) => row.digest.toString("base64") },
      toSession,
    );
  }

  async insert(record: SessionRecord, replaces: Buffer | null, audit: AuditEventInput | null): Promise<void> {
    await this.database.transaction(async (client) => {
      if (replaces) {
        await client.query("UPDATE sessions SET revoked_at = $1 WHERE digest = $2 AND revoked_at IS NULL", [
          record.createdAt,
          replaces,
        ]);
      }
      await client.query(`INSERT INTO sessions (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`, [
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
      ]);
      if (audit) await insertAuditEvents(client, [audit]);
    });
  }

  async findByDigest(digest: Buffer): Promise<SessionRecord | null> {
    return this.byDigest.load(digest);
  }

  async touch(id: string, at: number, idleExpiresAt: number): Promise<void> {
    await this.database.query(
      "UPDATE sessions SET last_seen_at = $1, idle_expires_at = $2 WHERE id = $3 AND revoked_at IS NULL AND last_seen_at < $1",
      [at, idleExpiresAt, id],
    );
  }

  async listForUser(userId: string, now: number): Promise<SessionRecord[]> {
    const { rows } = await this.database.query<Row>(
      `SELECT ${COLUMNS} FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2 AND idle_expires_at > $2 ORDER BY id DESC`,
      [userId, now],
    );
    return rows.map(toSession);
  }

  async revoke(userId: string, id: string, at: number, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(async (client) => {
      const result = await client.query(
        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        [at, id, userId],
      );
      if (result.rowCount === 0) return false;
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async revokeAllForUser(userId: string, at: number, audit: AuditEventInput | null): Promise<number> {
    return this.database.transaction(async (client) => {
      const count = await revokeUserSessions(client, userId, at, null);
      await revokeUserRefreshTokens(client, userId, at, null);
      if (audit) await insertAuditEvents(client, [audit]);
      return count;
    });
  }
}
