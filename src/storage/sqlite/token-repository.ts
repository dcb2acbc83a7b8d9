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
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";
import { GroupCommit } from "./group-commit.ts";

const INSERT = `INSERT INTO refresh_tokens (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

const TOKEN_WITH_USER = `SELECT ${COLUMNS.split(", ")
  .map((column) => `t.${column}`)
  .join(
    ", ",
  )}, u.status, u.scopes FROM refresh_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE t.id = ? AND t.digest = ?`;

type Cell = string | number | Uint8Array | null;

/** A row read as an array, in COLUMNS order (node:sqlite builds arrays faster than objects); the one mapping of a refresh-token row. */
function arrayToToken(row: readonly Cell[], digest: Buffer): RefreshTokenRecord {
  return {
    digest,
    id: row[1] as string,
    familyId: row[2] as string,
    userId: row[3] as string,
    clientId: row[4] as string,
    scope: row[5] as string,
    createdAt: row[6] as number,
    familyExpiresAt: row[7] as number,
    expiresAt: row[8] as number,
    usedAt: row[9] as number | null,
    replacedBy: row[10] as string | null,
    revokedAt: row[11] as number | null,
  };
}

/** Revokes the user's refresh tokens except family `keepFamilyId`; the caller owns the transaction. */
export function revokeUserRefreshTokens(
  database: SqliteDatabase,
  userId: string,
  at: number,
  keepFamilyId: string | null,
): void {
  database
    .statement(
      "UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL AND family_id IS NOT ?",
    )
    .run(at, userId, keepFamilyId);
}

const ACTIVE_SIGN_INS = `
  SELECT t.family_id, t.client_id, t.scope, t.created_at, min(t.expires_at, t.family_expires_at),
    (SELECT min(f.created_at) FROM refresh_tokens f WHERE f.family_id = t.family_id)
  FROM refresh_tokens t
  WHERE t.user_id = ? AND ${liveTokenCondition("t.", ["?", "?"])}
  ORDER BY t.created_at DESC, t.id DESC LIMIT ?`;

export class SqliteTokenRepository implements TokenRepository {
  private readonly database: SqliteDatabase;
  private readonly rotations: GroupCommit;
  constructor(database: SqliteDatabase) {
    this.database = database;
    this.rotations = new GroupCommit(database);
  }

  private insertNow(record: RefreshTokenRecord): void {
    this.database.statement(INSERT).run(...tokenColumnValues(record));
  }

  async insertRefresh(record: RefreshTokenRecord, audit: AuditEventInput | null): Promise<void> {
    this.database.transaction(() => {
      this.insertNow(record);
      if (audit) insertAuditEvent(this.database, audit);
    });
  }

  async findRefresh(ref: RefreshTokenRef): Promise<RefreshTokenRecord | null> {
    return this.findNow(ref);
  }

  /** The record id `ref` names: its own, or for a token from before migration 5, by digest. */
  private idOf(ref: RefreshTokenRef): string | null {
    if (ref.id !== null) return ref.id;
    const row = this.database
      .statement("SELECT id FROM refresh_token_legacy_digests WHERE digest = ?")
      .get(ref.digest) as { id: string } | undefined;
    return row?.id ?? null;
  }

  private findNow(ref: RefreshTokenRef): RefreshTokenRecord | null {
    const id = this.idOf(ref);
    if (id === null) return null;
    const row = this.database
      .statement(`SELECT ${COLUMNS} FROM refresh_tokens WHERE id = ? AND digest = ?`, { returnArrays: true })
      .get(id, ref.digest) as Cell[] | undefined;
    return row ? arrayToToken(row, ref.digest) : null;
  }

  async findRefreshForRotation(ref: RefreshTokenRef): Promise<RefreshForRotation | null> {
    const id = this.idOf(ref);
    if (id === null) return null;
    const row = this.database.statement(TOKEN_WITH_USER, { returnArrays: true }).get(id, ref.digest) as
      | Cell[]
      | undefined;
    if (!row) return null;
    return {
      // The digest read back is the one looked up: no copy of the stored blob.
      record: arrayToToken(row, ref.digest),
      userActive: row[12] === "active",
      userScopes: typeof row[13] === "string" ? JSON.parse(row[13]) : [],
    };
  }

  /**
   * Rotations are group-committed (`GroupCommit`): the ones that arrive close together
   * share one transaction, each in its own savepoint, so one failing rotation does not undo
   * the others. The promise settles only after the commit, so durability is the same as
   * one transaction per rotation.
   */
  rotateRefresh(
    ref: RefreshTokenRef,
    replacement: RefreshTokenRecord,
    at: number,
    audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null },
  ): Promise<RefreshRotation> {
    return this.rotations.run(() => this.rotateNow(ref, replacement, at, audits));
  }

  private rotateNow(
    ref: RefreshTokenRef,
    replacement: RefreshTokenRecord,
    at: number,
    audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null },
  ): RefreshRotation {
    // The conditional write is the whole race protection: of many requests presenting
    // the same token, exactly one sees `changes === 1`.
    const id = this.idOf(ref);
    if (id === null) return { outcome: "unknown" };
    const spent = this.database
      .statement(
        "UPDATE refresh_tokens SET used_at = ?, replaced_by = ? WHERE id = ? AND digest = ? AND used_at IS NULL AND revoked_at IS NULL",
      )
      .run(at, replacement.id, id, ref.digest);
    if (spent.changes === 1) {
      this.insertNow(replacement);
      if (audits.rotated) insertAuditEvent(this.database, audits.rotated);
      return { outcome: "rotated" };
    }
    const record = this.findNow({ id, digest: ref.digest });
    if (!record) return { outcome: "unknown" };
    // Revoked and never spent: a logout, password change or disable landed between the
    // read and this write. Nobody else holds it; its family is already ended.
    if (record.usedAt === null) return { outcome: "revoked", record };
    this.database
      .statement("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
      .run(at, record.familyId);
    if (audits.reused) insertAuditEvent(this.database, audits.reused);
    return { outcome: "reused", record };
  }

  async revokeFamily(
    familyId: string,
    change: { at: number; denyJti: { jti: string; expiresAt: number } | null; auditOnlyIfRevoked?: boolean },
    audit: AuditEventInput | null,
  ): Promise<number> {
    return this.database.transaction(() => {
      const revoked = Number(
        this.database
          .statement("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
          .run(change.at, familyId).changes,
      );
      if (change.denyJti) {
        this.database
          .statement("INSERT INTO denied_access_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING")
          .run(change.denyJti.jti, change.denyJti.expiresAt);
      }
      if (audit && (revoked > 0 || !change.auditOnlyIfRevoked)) insertAuditEvent(this.database, audit);
      return revoked;
    });
  }

  async listActiveSignIns(userId: string, now: number, limit: number): Promise<TokenSignIn[]> {
    const rows = this.database
      .statement(ACTIVE_SIGN_INS, { returnArrays: true })
      .all(userId, now, now, limit) as unknown as Cell[][];
    return rows.map((row) => ({
      familyId: row[0] as string,
      clientId: row[1] as string,
      scope: row[2] as string,
      lastRefreshedAt: Number(row[3]),
      expiresAt: Number(row[4]),
      startedAt: Number(row[5]),
    }));
  }

  async isActiveSignIn(userId: string, familyId: string, now: number): Promise<boolean> {
    const row = this.database
      .statement(
        `SELECT 1 AS hit FROM refresh_tokens WHERE family_id = ? AND user_id = ? AND ${liveTokenCondition("", ["?", "?"])} LIMIT 1`,
      )
      .get(familyId, userId, now, now);
    return row !== undefined;
  }

  async isFamilyRevoked(familyId: string): Promise<boolean> {
    const row = this.database
      .statement("SELECT 1 AS hit FROM refresh_tokens WHERE family_id = ? AND revoked_at IS NOT NULL LIMIT 1")
      .get(familyId);
    return row !== undefined;
  }

  async isJtiDenied(jti: string): Promise<boolean> {
    return this.database.statement("SELECT 1 AS hit FROM denied_access_tokens WHERE jti = ?").get(jti) !== undefined;
  }
}
