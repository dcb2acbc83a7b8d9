import type {
  AuditEventInput,
  PasswordChange,
  UserListQuery,
  UserRecord,
  UserRepository,
  UserUpdate,
} from "../types.ts";
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";
import { revokeUserSessions } from "./session-repository.ts";
import { revokeUserRefreshTokens } from "./token-repository.ts";

type Row = Record<string, string | number | null>;

const COLUMNS = "id, email, password_hash, scopes, status, created_at, updated_at, disabled_at, password_changed_at";

function rowToUser(row: Row): UserRecord {
  return {
    id: row.id as string,
    email: row.email as string,
    passwordHash: row.password_hash as string,
    scopes: JSON.parse(row.scopes as string),
    status: row.status === "disabled" ? "disabled" : "active",
    createdAt: row.created_at as number,
    updatedAt: row.updated_at as number,
    disabledAt: row.disabled_at as number | null,
    passwordChangedAt: row.password_changed_at as number,
  };
}

export class SqliteUserRepository implements UserRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async insert(record: UserRecord, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(() => {
      const result = this.database
        .statement(`INSERT INTO users (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`)
        .run(
          record.id,
          record.email,
          record.passwordHash,
          JSON.stringify(record.scopes),
          record.status,
          record.createdAt,
          record.updatedAt,
          record.disabledAt,
          record.passwordChangedAt,
        );
      if (result.changes === 0) return false;
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async findById(id: string): Promise<UserRecord | null> {
    return this.findByIdNow(id);
  }

  /** SQLite runs one write transaction at a time on this connection: every read is settled. */
  async findSettled(id: string): Promise<UserRecord | null> {
    return this.findByIdNow(id);
  }

  private findByIdNow(id: string): UserRecord | null {
    const row = this.database.statement(`SELECT ${COLUMNS} FROM users WHERE id = ?`).get(id) as Row | undefined;
    return row ? rowToUser(row) : null;
  }

  async findByEmail(email: string): Promise<UserRecord | null> {
    const row = this.database.statement(`SELECT ${COLUMNS} FROM users WHERE email = ?`).get(email) as Row | undefined;
    return row ? rowToUser(row) : null;
  }

  async list(query: UserListQuery): Promise<UserRecord[]> {
    const rows =
      query.before === undefined
        ? this.database.statement(`SELECT ${COLUMNS} FROM users ORDER BY id DESC LIMIT ?`).all(query.limit)
        : this.database
            .statement(`SELECT ${COLUMNS} FROM users WHERE id < ? ORDER BY id DESC LIMIT ?`)
            .all(query.before, query.limit);
    return (rows as Row[]).map(rowToUser);
  }

  async disable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null> {
    return this.database.transaction(() => {
      this.database
        .statement(
          "UPDATE users SET status = 'disabled', disabled_at = ?, updated_at = ? WHERE id = ? AND status = 'active'",
        )
        .run(at, at, id);
      const record = this.findByIdNow(id);
      if (!record) return null;
      revokeUserSessions(this.database, id, at, null);
      revokeUserRefreshTokens(this.database, id, at, null);
      if (audit) insertAuditEvent(this.database, audit);
      return record;
    });
  }

  async enable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null> {
    return this.database.transaction(() => {
      this.database
        .statement(
          "UPDATE users SET status = 'active', disabled_at = NULL, updated_at = ? WHERE id = ? AND status = 'disabled'",
        )
        .run(at, id);
      const record = this.findByIdNow(id);
      if (!record) return null;
      if (audit) insertAuditEvent(this.database, audit);
      return record;
    });
  }

  async update(
    id: string,
    changes: UserUpdate,
    at: number,
    audit: (before: UserRecord, after: UserRecord) => AuditEventInput | null,
  ): Promise<UserRecord | null> {
    return this.database.transaction(() => {
      const before = this.findByIdNow(id);
      if (!before) return null;
      if (changes.scopes !== undefined) {
        const scopes = JSON.stringify(changes.scopes);
        this.database
          .statement("UPDATE users SET scopes = ?, updated_at = ? WHERE id = ? AND scopes IS NOT ?")
          .run(scopes, at, id, scopes);
      }
      const after = this.findByIdNow(id);
      if (!after) return null;
      const event = audit(before, after);
      if (event) insertAuditEvent(this.database, event);
      return after;
    });
  }

  async delete(id: string, _at: number, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(() => {
      // Sessions and refresh tokens go with the user (ON DELETE CASCADE).
      const result = this.database.statement("DELETE FROM users WHERE id = ?").run(id);
      if (result.changes === 0) return false;
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async rehash(id: string, expectedHash: string, newHash: string, at: number): Promise<boolean> {
    const result = this.database
      .statement("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ? AND password_hash = ?")
      .run(newHash, at, id, expectedHash);
    return result.changes > 0;
  }

  async changePassword(id: string, change: PasswordChange, audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(() => {
      const result = this.database
        .statement(
          "UPDATE users SET password_hash = ?, password_changed_at = ?, updated_at = ? WHERE id = ? AND (status = 'active' OR ?) AND password_changed_at = ?",
        )
        .run(change.passwordHash, change.at, change.at, id, change.evenIfDisabled ? 1 : 0, change.changedAt);
      if (result.changes === 0) return false;
      revokeUserSessions(this.database, id, change.at, change.keepSessionId);
      revokeUserRefreshTokens(this.database, id, change.at, change.keepFamilyId);
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }
}
