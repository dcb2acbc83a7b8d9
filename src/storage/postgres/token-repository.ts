import { timingSafeEqual } from "node:crypto";
import type DataLoader from "dataloader";
import type { QueryResult, QueryResultRow } from "pg";
import { AUDIT_COLUMNS, auditColumnValues } from "../audit-columns.ts";
import { TOKEN_COLUMNS as COLUMNS, liveTokenCondition, tokenColumnValues } from "../token-columns.ts";
import type {
  AuditEventInput,
  RefreshForRotation,
  RefreshRotation,
  RefreshTokenRecord,
  RefreshTokenRef,
  TokenRepository,
  TokenSignIn,
} from "../types.ts";
import { AUDIT_COLUMN_TYPES, insertAuditEvents } from "./audit-repository.ts";
import { batchedMembership, batchedStatement } from "./batched-statement.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";

interface Row {
  digest: Buffer;
  id: string;
  family_id: string;
  user_id: string;
  client_id: string;
  scope: string;
  created_at: number;
  family_expires_at: number;
  expires_at: number;
  used_at: number | null;
  replaced_by: string | null;
  revoked_at: number | null;
}

function toToken(row: Row): RefreshTokenRecord {
  return {
    digest: row.digest,
    id: row.id,
    familyId: row.family_id,
    userId: row.user_id,
    clientId: row.client_id,
    scope: row.scope,
    createdAt: row.created_at,
    familyExpiresAt: row.family_expires_at,
    expiresAt: row.expires_at,
    usedAt: row.used_at,
    replacedBy: row.replaced_by,
    revokedAt: row.revoked_at,
  };
}

/** COLUMNS' types, for statements that select parameters rather than insert VALUES. */
const COLUMN_TYPES = [
  "bytea",
  "text",
  "text",
  "text",
  "text",
  "text",
  "bigint",
  "bigint",
  "bigint",
  "bigint",
  "text",
  "bigint",
];

/** One rotation's spend, as `spends` batches them. */
interface Spend {
  id: string;
  digest: Buffer;
  replacement: RefreshTokenRecord;
  at: number;
  audit: AuditEventInput | null;
}

const TOKEN_COLUMN_NAMES = COLUMNS.split(", ");
const AUDIT_COLUMN_NAMES = AUDIT_COLUMNS.split(", ");

/** An array parameter's element type: JSON travels as text and is cast where it is inserted. */
function arrayable(type: string): string {
  return type === "jsonb" ? "text" : type;
}

/** `$from::type, …` for parameters numbered from `from`, one per type. */
function typedParameters(types: readonly string[], from: number): string {
  return types.map((type, i) => `$${from + i}::${type}`).join(", ");
}

async function insert(client: Runner, record: RefreshTokenRecord): Promise<void> {
  await client.query(
    `INSERT INTO refresh_tokens (${COLUMNS}) VALUES (${COLUMN_TYPES.map((_, i) => `$${i + 1}`).join(", ")})`,
    tokenColumnValues(record),
  );
}

/**
 * Runs a revocation of refresh tokens until a pass finds nothing left to revoke; returns
 * how many it revoked. Under READ COMMITTED one statement sees only the rows committed
 * before it started, and a rotation that already holds a token's row lock commits the
 * successor while the statement waits for that lock: the statement then revokes the
 * spent token but never sees its successor, which goes on refreshing (a thief surviving
 * the reuse detection, a logout or a password change). That successor was committed
 * before the wait ended, so the next pass sees it. The loop ends: a pass finds only the
 * successors of rotations it waited for, and rotating one of those takes a new request.
 */
async function revokeUntilNoneLeft(client: Queryable, sql: string, params: unknown[]): Promise<number> {
  let revoked = 0;
  for (;;) {
    const { rowCount } = await client.query(sql, params);
    if (!rowCount) return revoked;
    revoked += rowCount;
  }
}

/** Revokes the user's refresh tokens except family `keepFamilyId`; the caller owns the transaction. */
export async function revokeUserRefreshTokens(
  client: Queryable,
  userId: string,
  at: number,
  keepFamilyId: string | null,
): Promise<void> {
  await revokeUntilNoneLeft(
    client,
    "UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND family_id IS DISTINCT FROM $3",
    [at, userId, keepFamilyId],
  );
}

const REVOKE_FAMILY = "UPDATE refresh_tokens SET revoked_at = $1 WHERE family_id = $2 AND revoked_at IS NULL";

/** The pool or a transaction's client: what a read needs. */
interface Runner {
  query<R extends QueryResultRow>(sql: string, params?: unknown[]): Promise<QueryResult<R>>;
}

/** A refresh token with its user's status and scopes: what a rotation reads, in one query (made once). */
const TOKEN_WITH_USER = `SELECT ${TOKEN_COLUMN_NAMES.map((column) => `t.${column}`).join(", ")}, u.status, u.scopes AS user_scopes
  FROM refresh_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = ANY($1::text[])`;
export class PostgresTokenRepository implements TokenRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
    this.revokedFamilies = batchedMembership(
      database,
      "SELECT DISTINCT family_id AS key FROM refresh_tokens WHERE family_id = ANY($1::text[]) AND revoked_at IS NOT NULL",
    );
    this.deniedJtis = batchedMembership(
      database,
      "SELECT jti AS key FROM denied_access_tokens WHERE jti = ANY($1::text[])",
    );
  }

  async insertRefresh(record: RefreshTokenRecord, audit: AuditEventInput | null): Promise<void> {
    if (!audit) return insert(this.database, record);
    // One statement (a transaction of its own), so one round trip instead of four (BEGIN,
    // two inserts, COMMIT): every sign-in makes one. Both rows or neither.
    const auditFrom = COLUMN_TYPES.length + 1;
    await this.database.query(
      `WITH token AS (
         INSERT INTO refresh_tokens (${COLUMNS}) VALUES (${COLUMN_TYPES.map((_, i) => `$${i + 1}`).join(", ")})
       )
       INSERT INTO audit_events (${AUDIT_COLUMNS}) SELECT ${typedParameters(AUDIT_COLUMN_TYPES, auditFrom)}`,
      [...tokenColumnValues(record), ...auditColumnValues(audit)],
    );
  }

  /** The record id `ref` names: its own, or for a token from before migration 5, by digest. */
  private async idOf(client: Runner, ref: RefreshTokenRef): Promise<string | null> {
    if (ref.id !== null) return ref.id;
    const { rows } = await client.query<{ id: string }>(
      "SELECT id FROM refresh_token_legacy_digests WHERE digest = $1",
      [ref.digest],
    );
    return rows[0]?.id ?? null;
  }

  private async findWith(client: Runner, ref: RefreshTokenRef): Promise<RefreshTokenRecord | null> {
    const id = await this.idOf(client, ref);
    if (id === null) return null;
    const { rows } = await client.query<Row>(`SELECT ${COLUMNS} FROM refresh_tokens WHERE id = $1 AND digest = $2`, [
      id,
      ref.digest,
    ]);
    return rows[0] ? toToken(rows[0]) : null;
  }

  async findRefresh(ref: RefreshTokenRef): Promise<RefreshTokenRecord | null> {
    return this.findWith(this.database, ref);
  }

  async findRefreshForRotation(ref: RefreshTokenRef): Promise<RefreshForRotation | null> {
    const id = await this.idOf(this.database, ref);
    if (id === null) return null;
    return this.forRotation.load({ id, digest: ref.digest });
  }

  /**
   * Every refresh reads its token and user first: batched (batched-statement.ts). Rows are
   * found by id, the token's public half; the secret's digest is then compared here, in
   * constant time.
   */
  private readonly forRotation = batchedStatement(async (refs: ReadonlyArray<{ id: string; digest: Buffer }>) => {
    const { rows } = await this.database.query<Row & { status: string | null; user_scopes: string[] | null }>(
      TOKEN_WITH_USER,
      [refs.map((ref) => ref.id)],
    );
    const byId = new Map(rows.map((row) => [row.id, row]));
    return refs.map((ref): RefreshForRotation | null => {
      const row = byId.get(ref.id);
      if (!row || row.digest.length !== ref.digest.length || !timingSafeEqual(row.digest, ref.digest)) return null;
      return { record: toToken(row), userActive: row.status === "active", userScopes: row.user_scopes ?? [] };
    });
  });

  /**
   * Rotations asked for in one turn, spent in one statement (batched-statement.ts): one
   * round trip and one commit for all of them instead of one each, and a commit waits for
   * its WAL flush. A statement is a transaction of its own, and its data-modifying CTEs see
   * the spend's RETURNING, so a successor and its audit event are written only for a token
   * that was spent. Two rotations of one token in the same batch: the first is put in the
   * statement, the other answers "not spent" (so it takes the reuse way, as the loser of a
   * race does). A statement that fails for any reason but the database being away is
   * retried rotation by rotation.
   *
   * A batch never waits for a token's row lock while it holds others: rows another
   * transaction holds are skipped (SKIP LOCKED), and those rotations are then asked alone.
   * A batch that waited holding rows closed a cycle with a revocation of a user's tokens
   * that holds one of them and waits for another (a password change, a disable, a logout
   * of everywhere, racing two refreshes of that user in one turn; test/auth/
   * refresh-batch-races.test.ts): PostgreSQL broke the deadlock by failing either, and a
   * failed revocation was a 500 and a password left unchanged. It also made one row held
   * elsewhere hold up, or time out, every rotation of the batch. Alone, a rotation holds one row,
   * waits for it as before batching (READ COMMITTED: when the holder commits, the WHERE
   * clause is checked again on the row as it is then, so of concurrent rotations of one
   * token exactly one wins), and cannot close such a cycle.
   */
  private readonly spends = batchedStatement(async (asked: readonly Spend[]) => {
    if (asked.length === 1) return [(await this.spend(asked, false)).spent.size === 1];
    const first = new Map<string, number>();
    const batch: Spend[] = [];
    for (const [i, spend] of asked.entries()) {
      if (first.has(spend.id)) continue;
      first.set(spend.id, i);
      batch.push(spend);
    }
    const { spent, busy } = await this.spend(batch, true);
    return Promise.all(
      asked.map(async (spend, i): Promise<boolean | Error> => {
        if (first.get(spend.id) !== i) return false;
        if (spent.has(spend.id)) return true;
        if (!busy.has(spend.id)) return false;
        // Its own failure, not the batch's: thrown, it would have the batch retried
        // rotation by rotation, and a token the batch spent would be asked again and
        // answer "not spent", a reuse.
        return this.spend([spend], false).then(
          (alone) => alone.spent.size === 1,
          (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
        );
      }),
    );
  });

  /**
   * Spends `batch` (distinct token ids) in one statement; returns the ids spent. With
   * `skipLocked`, rows another transaction holds are left alone rather than waited for,
   * and returned as `busy` (with any that such a transaction spent or revoked since this
   * statement began: a spent or revoked token stays so, so a token not live when it began
   * is neither).
   */
  private async spend(
    batch: readonly Spend[],
    skipLocked: boolean,
  ): Promise<{ spent: Set<string>; busy: Set<string> }> {
    const columns: unknown[][] = [[], [], [], ...COLUMN_TYPES.map(() => []), ...AUDIT_COLUMN_TYPES.map(() => []), []];
    for (const spend of batch) {
      const row = [
        spend.id,
        spend.digest,
        spend.at,
        ...tokenColumnValues(spend.replacement),
        ...(spend.audit ? auditColumnValues(spend.audit) : AUDIT_COLUMN_TYPES.map(() => null)),
        spend.audit !== null,
      ];
      for (const [c, value] of row.entries()) (columns[c] as unknown[]).push(value);
    }
    const types = ["text", "bytea", "bigint", ...COLUMN_TYPES, ...AUDIT_COLUMN_TYPES.map(arrayable), "boolean"];
    const names = [
      "spent_id",
      "spent_digest",
      "spent_at",
      ...TOKEN_COLUMN_NAMES.map((name) => `t_${name}`),
      ...AUDIT_COLUMN_NAMES.map((name) => `a_${name}`),
      "audited",
    ];
    const live = "t.digest = i.spent_digest AND t.used_at IS NULL AND t.revoked_at IS NULL";
    // `locked` is read twice, so it runs once (materialized): the spend and `busy` agree.
    const { rows } = await this.database.query<{ id: string; spent: boolean }>(
      `WITH input AS (
         SELECT * FROM unnest(${types.map((type, i) => `$${i + 1}::${type}[]`).join(", ")}) AS i(${names.join(", ")})
       )${
         skipLocked
           ? `, locked AS (
         SELECT t.id FROM refresh_tokens t JOIN input i ON t.id = i.spent_id WHERE ${live}
         FOR NO KEY UPDATE OF t SKIP LOCKED
       )`
           : ""
       }, spent AS (
         UPDATE refresh_tokens t SET used_at = i.spent_at, replaced_by = i.t_id
         FROM input i
         WHERE t.id = i.spent_id AND ${live}${skipLocked ? " AND t.id IN (SELECT id FROM locked)" : ""}
         RETURNING t.id
       ), successor AS (
         INSERT INTO refresh_tokens (${COLUMNS})
         SELECT ${TOKEN_COLUMN_NAMES.map((name) => `i.t_${name}`).join(", ")} FROM input i JOIN spent s ON s.id = i.spent_id
       ), audited AS (
         INSERT INTO audit_events (${AUDIT_COLUMNS})
         SELECT ${AUDIT_COLUMN_NAMES.map((name, j) => `i.a_${name}${AUDIT_COLUMN_TYPES[j] === "jsonb" ? "::jsonb" : ""}`).join(", ")}
         FROM input i JOIN spent s ON s.id = i.spent_id WHERE i.audited
       )
       SELECT id, true AS spent FROM spent${
         skipLocked
           ? `
       UNION ALL
       SELECT t.id, false FROM refresh_tokens t JOIN input i ON t.id = i.spent_id
       WHERE ${live} AND t.id NOT IN (SELECT id FROM locked)`
           : ""
       }`,
      columns,
    );
    return {
      spent: new Set(rows.filter((row) => row.spent).map((row) => row.id)),
      busy: new Set(rows.filter((row) => !row.spent).map((row) => row.id)),
    };
  }

  async rotateRefresh(
    ref: RefreshTokenRef,
    replacement: RefreshTokenRecord,
    at: number,
    audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null },
  ): Promise<RefreshRotation> {
    const id = await this.idOf(this.database, ref);
    if (id === null) return { outcome: "unknown" };
    // The common case: spent, succeeded and audited in one statement shared with the other
    // rotations of this turn (see `spends`).
    if (await this.spends.load({ id, digest: ref.digest, replacement, at, audit: audits.rotated })) {
      return { outcome: "rotated" };
    }
    // Spent already, revoked, or unknown: the rare way, in a transaction of its own. What
    // it finds cannot have changed in between (a spent or revoked token stays so).
    return this.database.transaction(async (client): Promise<RefreshRotation> => {
      const record = await this.findWith(client, { id, digest: ref.digest });
      if (!record) return { outcome: "unknown" };
      // Revoked and never spent: a logout, password change or disable landed between the
      // read and this write. Nobody else holds it; its family is already ended.
      if (record.usedAt === null) return { outcome: "revoked", record };
      await revokeUntilNoneLeft(client, REVOKE_FAMILY, [at, record.familyId]);
      if (audits.reused) await insertAuditEvents(client, [audits.reused]);
      return { outcome: "reused", record };
    });
  }

  async revokeFamily(
    familyId: string,
    change: { at: number; denyJti: { jti: string; expiresAt: number } | null; auditOnlyIfRevoked?: boolean },
    audit: AuditEventInput | null,
  ): Promise<number> {
    return this.database.transaction(async (client) => {
      // Row locks make concurrent calls wait for each other: the later ones revoke nothing.
      const revoked = await revokeUntilNoneLeft(client, REVOKE_FAMILY, [change.at, familyId]);
      if (change.denyJti) {
        await client.query(
          "INSERT INTO denied_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
          [change.denyJti.jti, change.denyJti.expiresAt],
        );
      }
      if (audit && (revoked > 0 || !change.auditOnlyIfRevoked)) await insertAuditEvents(client, [audit]);
      return revoked;
    });
  }

  async listActiveSignIns(userId: string, now: number, limit: number): Promise<TokenSignIn[]> {
    const { rows } = await this.database.query<{
      family_id: string;
      client_id: string;
      scope: string;
      created_at: string;
      expires_at: string;
      started_at: string;
    }>(
      `SELECT t.family_id, t.client_id, t.scope, t.created_at, least(t.expires_at, t.family_expires_at) AS expires_at,
         (SELECT min(f.created_at) FROM refresh_tokens f WHERE f.family_id = t.family_id) AS started_at
       FROM refresh_tokens t
       WHERE t.user_id = $1 AND ${liveTokenCondition("t.", ["$2", "$2"])}
       ORDER BY t.created_at DESC, t.id DESC LIMIT $3`,
      [userId, now, limit],
    );
    return rows.map((row) => ({
      familyId: row.family_id,
      clientId: row.client_id,
      scope: row.scope,
      lastRefreshedAt: Number(row.created_at),
      expiresAt: Number(row.expires_at),
      startedAt: Number(row.started_at),
    }));
  }

  async isActiveSignIn(userId: string, familyId: string, now: number): Promise<boolean> {
    const { rows } = await this.database.query(
      `SELECT 1 FROM refresh_tokens WHERE family_id = $1 AND user_id = $2 AND ${liveTokenCondition("", ["$3", "$3"])} LIMIT 1`,
      [familyId, userId, now],
    );
    return rows.length > 0;
  }

  async isFamilyRevoked(familyId: string): Promise<boolean> {
    return this.revokedFamilies.load(familyId);
  }

  async isJtiDenied(jti: string): Promise<boolean> {
    return this.deniedJtis.load(jti);
  }

  /** `/auth/me` asks both for every token it checks: batched (batched-statement.ts). */
  private readonly revokedFamilies: DataLoader<string, boolean>;
  private readonly deniedJtis: DataLoader<string, boolean>;
}
