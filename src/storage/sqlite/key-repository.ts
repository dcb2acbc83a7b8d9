import {
  holdsInherited,
  holdsPermissions,
  KEY_COLUMNS,
  KEY_COLUMNS_WITH_LAST_USE,
  keyColumnValues,
} from "../key-columns.ts";
import type {
  ApiKeyRecord,
  AuditEventInput,
  IndexedKey,
  InheritedKeyFields,
  KeyChanges,
  KeyListQuery,
  KeyRepository,
  KeyUpdate,
} from "../types.ts";
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";

type Cell = string | number | Uint8Array | null;

/** Read in this order, as arrays (see SqliteDatabase.statement); `toKey` maps the positions. */
const COLUMNS = KEY_COLUMNS;
const INSERT = `INSERT INTO api_keys (${COLUMNS}) VALUES (${COLUMNS.split(",")
  .map(() => "?")
  .join(", ")})`;

function stringList(text: string): string[] {
  return text === "[]" ? [] : JSON.parse(text);
}

export function toKey(row: readonly Cell[]): ApiKeyRecord {
  const digest = row[0] as Uint8Array;
  const rateLimit = row[8] as number | null;
  return {
    id: row[1] as string,
    // A view on the row's own bytes, not a copy: node:sqlite hands out a fresh array.
    digest: Buffer.from(digest.buffer, digest.byteOffset, digest.byteLength),
    name: row[2] as string,
    hint: row[3] as string,
    scopes: stringList(row[4] as string),
    permissions: stringList(row[5] as string),
    ownerId: row[6] as string | null,
    metadata: row[7] === null ? null : JSON.parse(row[7] as string),
    rateLimit: rateLimit === null ? null : { limit: rateLimit, windowSeconds: row[9] as number },
    createdAt: row[10] as number,
    expiresAt: row[11] as number | null,
    revokedAt: row[12] as number | null,
    revokedReason: row[13] as string | null,
    replacedBy: row[14] as string | null,
    rotatedFrom: row[15] as string | null,
    lastUsedAt: row[16] as number | null,
    allowedAddresses: row[17] === null ? null : stringList(row[17] as string),
  };
}

export class SqliteKeyRepository implements KeyRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async insert(record: ApiKeyRecord, audit: AuditEventInput | null): Promise<void> {
    this.database.transaction(() => {
      this.database.statement(INSERT).run(...keyColumnValues(record));
      if (audit) insertAuditEvent(this.database, audit);
    });
  }

  async insertMany(records: readonly ApiKeyRecord[]): Promise<void> {
    this.database.transaction(() => {
      const statement = this.database.statement(INSERT);
      for (const record of records) statement.run(...keyColumnValues(record));
    });
  }

  async findByDigest(digest: Buffer): Promise<ApiKeyRecord | null> {
    const row = this.database
      .statement(`SELECT ${COLUMNS} FROM api_keys WHERE digest = ?`, { returnArrays: true })
      .get(digest) as unknown as Cell[] | undefined;
    return row ? toKey(row) : null;
  }

  async findById(id: string): Promise<ApiKeyRecord | null> {
    return this.findByIdNow(id);
  }

  private findByIdNow(id: string): ApiKeyRecord | null {
    const row = this.database
      .statement(`SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys WHERE id = ?`, { returnArrays: true })
      .get(id) as unknown as Cell[] | undefined;
    return row ? toKey(row) : null;
  }

  async list(query: KeyListQuery): Promise<ApiKeyRecord[]> {
    const where: string[] = [];
    const values: string[] = [];
    if (query.ownerId !== undefined) {
      where.push("owner_id = ?");
      values.push(query.ownerId);
    }
    if (query.before !== undefined) {
      where.push("id < ?");
      values.push(query.before);
    }
    const sql = `SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    const rows = this.database
      .statement(sql, { returnArrays: true })
      .all(...values, query.limit) as unknown as Cell[][];
    return rows.map(toKey);
  }

  async update(
    id: string,
    changes: KeyUpdate,
    audit: AuditEventInput | ((before: ApiKeyRecord, after: ApiKeyRecord) => AuditEventInput) | null,
    holding?: readonly string[],
  ): Promise<ApiKeyRecord | null> {
    return this.database.transaction(() => {
      const before = this.findByIdNow(id);
      if (!before || (holding !== undefined && !holdsPermissions(before, holding))) return null;
      const sets: string[] = [];
      const values: Array<string | number | null> = [];
      const set = (column: string, value: string | number | null) => {
        sets.push(`${column} = ?`);
        values.push(value);
      };
      if (changes.name !== undefined) set("name", changes.name);
      if (changes.scopes !== undefined) set("scopes", JSON.stringify(changes.scopes));
      if (changes.permissions !== undefined) set("permissions", JSON.stringify(changes.permissions));
      if (changes.ownerId !== undefined) set("owner_id", changes.ownerId);
      if (changes.metadata !== undefined)
        set("metadata", changes.metadata === null ? null : JSON.stringify(changes.metadata));
      if (changes.rateLimit !== undefined) {
        set("rate_limit", changes.rateLimit?.limit ?? null);
        set("rate_window_seconds", changes.rateLimit?.windowSeconds ?? null);
      }
      if (changes.allowedAddresses !== undefined) {
        set("allowed_addresses", changes.allowedAddresses === null ? null : JSON.stringify(changes.allowedAddresses));
      }
      if (sets.length > 0) {
        const result = this.database.db
          .prepare(`UPDATE api_keys SET ${sets.join(", ")} WHERE id = ?`)
          .run(...values, id);
        if (result.changes === 0) return null;
      }
      const record = this.findByIdNow(id);
      if (record && audit) insertAuditEvent(this.database, typeof audit === "function" ? audit(before, record) : audit);
      return record;
    });
  }

  async revoke(
    id: string,
    at: number,
    reason: string,
    audit: AuditEventInput | null,
    holding?: readonly string[],
  ): Promise<ApiKeyRecord | null> {
    return this.database.transaction(() => {
      if (holding !== undefined) {
        // In the write transaction: what is read here stays so until the commit.
        const current = this.findByIdNow(id);
        if (current === null || !holdsPermissions(current, holding)) return current;
      }
      const result = this.database
        .statement("UPDATE api_keys SET revoked_at = ?, revoked_reason = ? WHERE id = ? AND revoked_at IS NULL")
        .run(at, reason, id);
      // Revoking a revoked key changes nothing, so it records nothing either.
      if (result.changes > 0 && audit) insertAuditEvent(this.database, audit);
      return this.findByIdNow(id);
    });
  }

  async rotate(
    oldId: string,
    replacement: ApiKeyRecord,
    change: { at: number; oldExpiresAt: number; revokeOld: boolean },
    audit: AuditEventInput | null,
    holding?: InheritedKeyFields,
  ): Promise<boolean> {
    return this.database.transaction(() => {
      if (holding !== undefined) {
        const current = this.findByIdNow(oldId);
        if (current === null || !holdsInherited(current, holding)) return false;
      }
      const result = this.database
        .statement(
          `UPDATE api_keys SET replaced_by = ?,
             expires_at = CASE WHEN expires_at IS NULL OR expires_at > ? THEN ? ELSE expires_at END,
             revoked_at = CASE WHEN ? THEN ? ELSE revoked_at END,
             revoked_reason = CASE WHEN ? THEN 'rotated' ELSE revoked_reason END
           WHERE id = ? AND revoked_at IS NULL AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
        )
        .run(
          replacement.id,
          change.oldExpiresAt,
          change.oldExpiresAt,
          change.revokeOld ? 1 : 0,
          change.at,
          change.revokeOld ? 1 : 0,
          oldId,
          change.at,
        );
      if (result.changes === 0) return false;
      this.database.statement(INSERT).run(...keyColumnValues(replacement));
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async expiringWithPermissions(from: number, until: number, limit: number): Promise<ApiKeyRecord[]> {
    const rows = this.database
      .statement(
        `SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys
         WHERE expires_at > ? AND expires_at <= ? AND revoked_at IS NULL AND replaced_by IS NULL
           AND permissions <> '[]'
         ORDER BY expires_at LIMIT ?`,
        { returnArrays: true },
      )
      .all(from, until, limit) as unknown as Cell[][];
    return rows.map(toKey);
  }

  async count(): Promise<number> {
    const row = this.database.statement("SELECT count(*) AS n FROM api_keys").get() as { n: number };
    return row.n;
  }

  async *scanActive(now: number, pageSize: number): AsyncIterable<IndexedKey[]> {
    // The digest comes as hex text: a Buffer made from it is cut from Node's shared pool,
    // where a BLOB would cost one native allocation per row, a million of them at start.
    const statement = this.database.statement(
      `SELECT hex(digest), id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at,
         allowed_addresses
       FROM api_keys
       WHERE id > ? AND (revoked_at IS NULL OR revoked_at > ?) AND (expires_at IS NULL OR expires_at > ?)
       ORDER BY id LIMIT ?`,
      { returnArrays: true },
    );
    let after = "";
    for (;;) {
      const rows = statement.all(after, now, now, pageSize) as unknown as Cell[][];
      if (rows.length === 0) return;
      const page = rows.map(
        (row): IndexedKey => ({
          digest: Buffer.from(row[0] as string, "hex"),
          id: row[1] as string,
          scopes: stringList(row[2] as string),
          permissions: stringList(row[3] as string),
          ownerId: row[4] as string | null,
          rateLimit: row[5] === null ? null : { limit: row[5] as number, windowSeconds: row[6] as number },
          expiresAt: row[7] as number | null,
          revokedAt: row[8] as number | null,
          allowedAddresses: row[9] === null ? null : stringList(row[9] as string),
        }),
      );
      after = page[page.length - 1]?.id ?? after;
      yield page;
      if (rows.length < pageSize) return;
    }
  }

  async lastChange(): Promise<number> {
    const row = this.database.statement("SELECT max(seq) AS seq FROM key_changes").get() as { seq: number | null };
    return row.seq ?? 0;
  }

  async changesSince(since: number, limit: number): Promise<KeyChanges> {
    const rows = this.database
      .statement("SELECT seq, key_id FROM key_changes WHERE seq > ? ORDER BY seq LIMIT ?")
      .all(since, limit) as Array<{ seq: number; key_id: string }>;
    const oldest = this.database.statement("SELECT min(seq) AS seq FROM key_changes").get() as {
      seq: number | null;
    };
    return {
      ids: rows.map((row) => row.key_id),
      last: rows.length > 0 ? (rows[rows.length - 1]?.seq ?? since) : since,
      gap: oldest.seq !== null && since < oldest.seq - 1,
    };
  }

  async pruneChanges(before: number): Promise<number> {
    const result = this.database
      .statement("DELETE FROM key_changes WHERE at < ? AND seq < (SELECT max(seq) FROM key_changes)")
      .run(before);
    return Number(result.changes);
  }
}
