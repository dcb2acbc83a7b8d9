import type DataLoader from "dataloader";
import type {
  AuditEventInput,
  PasswordChange,
  UserListQuery,
  UserRecord,
  UserRepository,
  UserUpdate,
} from "../types.ts";
import { insertAuditEvents } from "./audit-repository.ts";
import { batchedRows } from "./batched-statement.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";
import { revokeUserSessions } from "./session-repository.ts";
import { revokeUserRefreshTokens } from "./token-repository.ts";

const COLUMNS = "id, email, password_hash, scopes, status, created_at, updated_at, disabled_at, password_changed_at";

interface Row {
  id: string;
  email: string;
  password_hash: string;
  scopes: string[];
  status: string;
  created_at: number;
  updated_at: number;
  disabled_at: number | null;
  password_changed_at: number;
}

function toUser(row: Row): UserRecord {
  return {
    id: row.id,
    email: row.email,
    passwordHash: row.password_hash,
    scopes: row.scopes,
    status: row.status === "disabled" ? "disabled" : "active",
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    disabledAt: row.disabled_at,
    passwordChangedAt: row.password_changed_at,
  };
}

async function findById(client: Queryable, id: string): Promise<UserRecord | null> {
  const { rows } = await client.query<Row>(`SELECT ${COLUMNS} FROM users WHERE id = $1`, [id]);
  return rows[0] ? toUser(rows[0]) : null;
}

export class PostgresUserRepository implements UserRepository {
  private readonly database: PostgresDatabase;
  /** Every `/auth/me` and cookie-authenticated request reads its user: batched (batched-statement.ts). */
  private readonly byId: DataLoader<string, UserRecord | null>;

  constructor(database: PostgresDatabase) {
    this.database = database;
    this.byId = batchedRows(
      database,
      `SELECT ${COLUMNS} FROM users WHERE id = ANY($1::text[])`,
      { of: (id: string) => id, ofRow: (row: Row) => row.id },
      toUser,
    );
  }

  async insert(record: UserRecord, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(async (client) => {
      const result = await client.query(
        `INSERT INTO users (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (email) DO NOTHING`,
        [
          record.id,
          record.email,
          record.passwordHash,
          JSON.stringify(record.scopes),
          record.status,
          record.createdAt,
          record.updatedAt,
          record.disabledAt,
          record.passwordChangedAt,
        ],
      );
      if (result.rowCount === 0) return false;
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async findById(id: string): Promise<UserRecord | null> {
    return this.byId.load(id);
  }

  async findSettled(id: string): Promise<UserRecord | null> {
    try {
      // FOR SHARE conflicts with an UPDATE's row lock: the read waits for it to commit.
      const { rows } = await this.database.pool.query<Row>(`SELECT ${COLUMNS} FROM users WHERE id = $1 FOR SHARE`, [
        id,
      ]);
      return rows[0] ? toUser(rows[0]) : null;
    } catch (error) {
      throw this.database.translate(error);
    }
  }

  async findByEmail(email: string): Promise<UserRecord | null> {
    const { rows } = await this.database.query<Row>(`SELECT ${COLUMNS} FROM users WHERE email = $1`, [email]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  async list(query: UserListQuery): Promise<UserRecord[]> {
    const { rows } =
      query.before === undefined
        ? await this.database.query<Row>(`SELECT ${COLUMNS} FROM users ORDER BY id DESC LIMIT $1`, [query.limit])
        : await this.database.query<Row>(`SELECT ${COLUMNS} FROM users WHERE id < $1 ORDER BY id DESC LIMIT $2`, [
            query.before,
            query.limit,
          ]);
    return rows.map(toUser);
  }

  async disable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null> {
    return this.database.transaction(async (client) => {
      await client.query(
        "UPDATE users SET status = 'disabled', disabled_at = $1, updated_at = $1 WHERE id = $2 AND status = 'active'",
        [at, id],
      );
      const record = await findById(client, id);
      if (!record) return null;
      await revokeUserSessions(client, id, at, null);
      await revokeUserRefreshTokens(client, id, at, null);
      if (audit) await insertAuditEvents(client, [audit]);
      return record;
    });
  }

  async enable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null> {
    return this.database.transaction(async (client) => {
      await client.query(
        "UPDATE users SET status = 'active', disabled_at = NULL, updated_at = $1 WHERE id = $2 AND status = 'disabled'",
        [at, id],
      );
      const record = await findById(client, id);
      if (!record) return null;
      if (audit) await insertAuditEvents(client, [audit]);
      return record;
    });
  }

  async update(
    id: string,
    changes: UserUpdate,
    at: number,
    audit: (before: UserRecord, after: UserRecord) => AuditEventInput | null,
  ): Promise<UserRecord | null> {
    return this.database.transaction(async (client) => {
      // Locked, so the values the audit event says were replaced are the ones this change replaced.
      const { rows } = await client.query<Row>(`SELECT ${COLUMNS} FROM users WHERE id = $1 FOR UPDATE`, [id]);
      const before = rows[0] ? toUser(rows[0]) : null;
      if (!before) return null;
      let after = before;
      if (changes.scopes !== undefined) {
        const updated = await client.query<Row>(
          `UPDATE users SET scopes = $1::jsonb, updated_at = $2 WHERE id = $3 AND scopes <> $1::jsonb RETURNING ${COLUMNS}`,
          [JSON.stringify(changes.scopes), at, id],
        );
        if (updated.rows[0]) after = toUser(updated.rows[0]);
      }
      const event = audit(before, after);
      if (event) await insertAuditEvents(client, [event]);
      return after;
    });
  }

  async delete(id: string, _at: number, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(async (client) => {
      const result = await client.query("DELETE FROM users WHERE id = $1", [id]);
      if (result.rowCount === 0) return false;
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async rehash(id: string, expectedHash: string, newHash: string, at: number): Promise<boolean> {
    const result = await this.database.query(
      "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4",
      [newHash, at, id, expectedHash],
    );
    return (result.rowCount ?? 0) > 0;
  }

  async changePassword(id: string, change: PasswordChange, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(async (client) => {
      const result = await client.query(
        "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 WHERE id = $3 AND (status = 'active' OR $5) AND password_changed_at = $4",
        [change.passwordHash, change.at, id, change.changedAt, change.evenIfDisabled === true],
      );
      if (result.rowCount === 0) return false;
      await revokeUserSessions(client, id, change.at, change.keepSessionId);
      await revokeUserRefreshTokens(client, id, change.at, change.keepFamilyId);
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }
}
