import type DataLoader from "dataloader";
import {
  holdsInherited,
  holdsPermissions,
  KEY_COLUMN_COUNT,
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
import { insertAuditEvents } from "./audit-repository.ts";
import { batchedRows } from "./batched-statement.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";

const COLUMNS = KEY_COLUMNS;
const COLUMN_COUNT = KEY_COLUMN_COUNT;

interface Row {
  digest: Buffer;
  id: string;
  name: string;
  hint: string;
  scopes: string[];
  permissions: string[];
  owner_id: string | null;
  metadata: Record<string, unknown> | null;
  rate_limit: number | null;
  rate_window_seconds: number | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  revoked_reason: string | null;
  replaced_by: string | null;
  rotated_from: string | null;
  last_used_at: number | null;
  allowed_addresses: string[] | null;
}

function placeholders(rowIndex: number): string {
  const base = rowIndex * COLUMN_COUNT;
  return `(${Array.from({ length: COLUMN_COUNT }, (_, j) => `$${base + j + 1}`).join(", ")})`;
}

function toKey(row: Row): ApiKeyRecord {
  return {
    id: row.id,
    digest: row.digest,
    name: row.name,
    hint: row.hint,
    scopes: row.scopes,
    permissions: row.permissions,
    ownerId: row.owner_id,
    metadata: row.metadata,
    rateLimit:
      row.rate_limit === null || row.rate_window_seconds === null
        ? null
        : { limit: row.rate_limit, windowSeconds: row.rate_window_seconds },
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    revokedReason: row.revoked_reason,
    replacedBy: row.replaced_by,
    rotatedFrom: row.rotated_from,
    lastUsedAt: row.last_used_at,
    allowedAddresses: row.allowed_addresses,
  };
}

async function findById(client: Queryable, id: string): Promise<ApiKeyRecord | null> {
  const { rows } = await client.query<Row>(`SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys WHERE id = $1`, [id]);
  return rows[0] ? toKey(rows[0]) : null;
}

/**
 * True when the key exists and holds exactly these permissions; in a transaction, its row
 * is then locked until the end, so they stay so (a concurrent change waits, and one that
 * committed first is what this reads).
 */
async function holds(client: Queryable, id: string, permissions: readonly string[]): Promise<boolean> {
  const { rows } = await client.query("SELECT 1 FROM api_keys WHERE id = $1 AND permissions = $2::jsonb FOR UPDATE", [
    id,
    JSON.stringify(permissions),
  ]);
  return rows.length > 0;
}

export class PostgresKeyRepository implements KeyRepository {
  private readonly database: PostgresDatabase;
  /** Every verification's lookup, batched (batched-statement.ts). */
  private readonly byDigest: DataLoader<Buffer, ApiKeyRecord | null>;

  constructor(database: PostgresDatabase) {
    this.database = database;
    this.byDigest = batchedRows(
      database,
      `SELECT ${COLUMNS} FROM api_keys WHERE digest = ANY($1::bytea[])`,
      { of: (digest: Buffer) => digest.toString("base64"), ofRow: (row: Row) => row.digest.toString("base64") },
      toKey,
    );
  }

  async insert(record: ApiKeyRecord, audit: AuditEventInput | null): Promise<void> {
    await this.database.transaction(async (client) => {
      await client.query(`INSERT INTO api_keys (${COLUMNS}) VALUES ${placeholders(0)}`, keyColumnValues(record));
      if (audit) await insertAuditEvents(client, [audit]);
    });
  }

  async insertMany(records: readonly ApiKeyRecord[]): Promise<void> {
    await this.database.transaction(async (client) => {
      // 18 parameters per row: 2,000 rows a statement stays under the 65,535 limit.
      for (let i = 0; i < records.length; i += 2000) {
        const chunk = records.slice(i, i + 2000);
        await client.query(
          `INSERT INTO api_keys (${COLUMNS}) VALUES ${chunk.map((_, j) => placeholders(j)).join(", ")}`,
          chunk.flatMap(keyColumnValues),
        );
      }
    });
  }

  async findByDigest(digest: Buffer): Promise<ApiKeyRecord | null> {
    return this.byDigest.load(digest);
  }

  async findById(id: string): Promise<ApiKeyRecord | null> {
    try {
      return await findById(this.database.pool, id);
    } catch (error) {
      throw this.database.translate(error);
    }
  }

  async expiringWithPermissions(from: number, until: number, limit: number): Promise<ApiKeyRecord[]> {
    const { rows } = await this.database.query<Row>(
      `SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys
       WHERE expires_at > $1 AND expires_at <= $2 AND revoked_at IS NULL AND replaced_by IS NULL
         AND permissions <> '[]'::jsonb
       ORDER BY expires_at LIMIT $3`,
      [from, until, limit],
    );
    return rows.map(toKey);
  }

  async list(query: KeyListQuery): Promise<ApiKeyRecord[]> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.ownerId !== undefined) {
      params.push(query.ownerId);
      where.push(`owner_id = $${params.length}`);
    }
    if (query.before !== undefined) {
      params.push(query.before);
      where.push(`id < $${params.length}`);
    }
    params.push(query.limit);
    const { rows } = await this.database.query<Row>(
      `SELECT ${KEY_COLUMNS_WITH_LAST_USE} FROM api_keys ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT $${params.length}`,
      params,
    );
    return rows.map(toKey);
  }

  async update(
    id: string,
    changes: KeyUpdate,
    audit: AuditEventInput | ((before: ApiKeyRecord, after: ApiKeyRecord) => AuditEventInput) | null,
    holding?: readonly string[],
  ): Promise<ApiKeyRecord | null> {
    return this.database.transaction(async (client) => {
      // The row locked first, so that what is read as before is what the change replaces.
      await client.query("SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE", [id]);
      const before = await findById(client, id);
      if (!before || (holding !== undefined && !holdsPermissions(before, holding))) return null;
      const sets: string[] = [];
      const params: unknown[] = [];
      const set = (column: string, value: unknown) => {
        params.push(value);
        sets.push(`${column} = $${params.length}`);
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
        params.push(id);
        const result = await client.query(
          `UPDATE api_keys SET ${sets.join(", ")} WHERE id = $${params.length}`,
          params,
        );
        if (result.rowCount === 0) return null;
      }
      const record = await findById(client, id);
      if (record && audit)
        await insertAuditEvents(client, [typeof audit === "function" ? audit(before, record) : audit]);
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
    return this.database.transaction(async (client) => {
      if (holding !== undefined && !(await holds(client, id, holding))) return findById(client, id);
      const result = await client.query(
        "UPDATE api_keys SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        [at, reason, id],
      );
      // Revoking a revoked key changes nothing, so it records nothing either.
      if ((result.rowCount ?? 0) > 0 && audit) await insertAuditEvents(client, [audit]);
      return findById(client, id);
    });
  }

  async rotate(
    oldId: string,
    replacement: ApiKeyRecord,
    change: { at: number; oldExpiresAt: number; revokeOld: boolean },
    audit: AuditEventInput | null,
    holding?: InheritedKeyFields,
  ): Promise<boolean> {
    return this.database.transaction(async (client) => {
      if (holding !== undefined) {
        // Locked until the end, so what is compared is what the replacement takes over.
        const { rows } = await client.query<Row>(`SELECT ${COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE`, [oldId]);
        if (rows[0] === undefined || !holdsInherited(toKey(rows[0]), holding)) return false;
      }
      // The conditions in WHERE make this the single point of truth across nodes: two
      // rotations of one key race on this row lock, and the loser matches no row.
      const result = await client.query(
        `UPDATE api_keys SET replaced_by = $1,
           expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END,
           revoked_at = CASE WHEN $3 THEN $4 ELSE revoked_at END,
           revoked_reason = CASE WHEN $3 THEN 'rotated' ELSE revoked_reason END
         WHERE id = $5 AND revoked_at IS NULL AND replaced_by IS NULL AND (expires_at IS NULL OR expires_at > $4)`,
        [replacement.id, change.oldExpiresAt, change.revokeOld, change.at, oldId],
      );
      if (result.rowCount === 0) return false;
      await client.query(`INSERT INTO api_keys (${COLUMNS}) VALUES ${placeholders(0)}`, keyColumnValues(replacement));
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async count(): Promise<number> {
    const { rows } = await this.database.query<{ n: number }>("SELECT count(*)::bigint AS n FROM api_keys");
    return rows[0]?.n ?? 0;
  }

  async *scanActive(now: number, pageSize: number): AsyncIterable<IndexedKey[]> {
    let after = "";
    for (;;) {
      const { rows } = await this.database.query<Row>(
        `SELECT digest, id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at,
           allowed_addresses
         FROM api_keys
         WHERE id > $1 AND (revoked_at IS NULL OR revoked_at > $2) AND (expires_at IS NULL OR expires_at > $2)
         ORDER BY id LIMIT $3`,
        [after, now, pageSize],
      );
      if (rows.length === 0) return;
      const page = rows.map(
        (row): IndexedKey => ({
          digest: row.digest,
          id: row.id,
          scopes: row.scopes,
          permissions: row.permissions,
          ownerId: row.owner_id,
          rateLimit:
            row.rate_limit === null || row.rate_window_seconds === null
              ? null
              : { limit: row.rate_limit, windowSeconds: row.rate_window_seconds },
          expiresAt: row.expires_at,
          revokedAt: row.revoked_at,
          allowedAddresses: row.allowed_addresses,
        }),
      );
      after = page[page.length - 1]?.id ?? after;
      yield page;
      if (rows.length < pageSize) return;
    }
  }

  async lastChange(): Promise<number> {
    const { rows } = await this.database.query<{ seq: number | null }>("SELECT max(seq) AS seq FROM key_changes");
    return rows[0]?.seq ?? 0;
  }

  async changesSince(since: number, limit: number): Promise<KeyChanges> {
    const { rows } = await this.database.query<{ seq: number; key_id: string; oldest: number }>(
      `SELECT seq, key_id, (SELECT min(seq) FROM key_changes) AS oldest
       FROM key_changes WHERE seq > $1 ORDER BY seq LIMIT $2`,
      [since, limit],
    );
    let oldest: number | null | undefined = rows[0]?.oldest;
    if (oldest === undefined) {
      const result = await this.database.query<{ seq: number | null }>("SELECT min(seq) AS seq FROM key_changes");
      oldest = result.rows[0]?.seq ?? null;
    }
    return {
      ids: rows.map((row) => row.key_id),
      last: rows.length > 0 ? (rows[rows.length - 1]?.seq ?? since) : since,
      gap: oldest !== null && since < oldest - 1,
    };
  }

  async pruneChanges(before: number): Promise<number> {
    const result = await this.database.query(
      "DELETE FROM key_changes WHERE at < $1 AND seq < (SELECT max(seq) FROM key_changes)",
      [before],
    );
    return result.rowCount ?? 0;
  }
}
