import type { AuditEventInput, RefreshRotation, RefreshTokenRecord, TokenRepository } from "../types.ts";
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";

type Row = Record<string, string | number | Uint8Array | null>;

const COLUMNS =
  "digest, id, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at, used_at, replaced_by, revoked_at";
const INSERT = `INSERT INTO refresh_tokens (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

function rowToToken(row: Row): RefreshTokenRecord {
  return {
    digest: Buffer.from(row.digest as Uint8Array),
    id: row.id as string,
    familyId: row.family_id as string,
    userId: row.user_id as string,
    clientId: row.client_id as string,
    scope: row.scope as string,
    createdAt: row.created_at as number,
    familyExpiresAt: row.family_expires_at as number,
    expiresAt: row.expires_at as number,
    usedAt: row.used_at as number | null,
    replacedBy: row.replaced_by as string | null,
    revokedAt: row.revoked_at as number | null,
  };
}

/** Rotations committed together at most; bounds how long one commit holds the event loop. */
const MAX_ROTATIONS_PER_COMMIT = 256;

interface PendingRotation {
  digest: Buffer;
  replacement: RefreshTokenRecord;
  at: number;
  audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null };
  resolve(outcome: RefreshRotation): void;
  reject(error: unknown): void;
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

export class SqliteTokenRepository implements TokenRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  private insertNow(record: RefreshTokenRecord): void {
    this.database
      .statement(INSERT)
      .run(
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
      );
  }

  async insertRefresh(record: RefreshTokenRecord, audit: AuditEventInput | null): Promise<void> {
    this.database.transaction(() => {
      this.insertNow(record);
      if (audit) insertAuditEvent(this.database, audit);
    });
  }

  async findRefreshByDigest(digest: Buffer): Promise<RefreshTokenRecord | null> {
    const row = this.database.statement(`SELECT ${COLUMNS} FROM refresh_tokens WHERE digest = ?`).get(digest) as
      | Row
      | undefined;
    return row ? rowToToken(row) : null;
  }

  /**
   * Rotations are group-committed: the ones that arrive in the same turn of the event loop
   * share one transaction (the commit is most of a rotation's cost), each inside its own
   * savepoint so one failing rotation does not undo the others. A caller's promise settles
   * only after the commit, so durability is the same as one transaction per rotation.
   */
  rotateRefresh(
    digest: Buffer,
    replacement: RefreshTokenRecord,
    at: number,
    audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null },
  ): Promise<RefreshRotation> {
    return new Promise((resolve, reject) => {
      this.pendingRotations.push({ digest, replacement, at, audits, resolve, reject });
      if (this.pendingRotations.length === 1) setImmediate(() => this.flushRotations());
    });
  }

  private pendingRotations: PendingRotation[] = [];

  private flushRotations(): void {
    while (this.pendingRotations.length > 0) {
      const batch = this.pendingRotations.splice(0, MAX_ROTATIONS_PER_COMMIT);
      const outcomes: Array<{ value: RefreshRotation } | { error: unknown }> = [];
      try {
        this.database.transaction(() => {
          for (const item of batch) {
            this.database.db.exec("SAVEPOINT rotation");
            try {
              outcomes.push({ value: this.rotateNow(item) });
              this.database.db.exec("RELEASE rotation");
            } catch (error) {
              this.database.db.exec("ROLLBACK TO rotation");
              this.database.db.exec("RELEASE rotation");
              outcomes.push({ error });
            }
          }
        });
      } catch (error) {
        for (const item of batch) item.reject(error);
        continue;
      }
      batch.forEach((item, i) => {
        const outcome = outcomes[i];
        if (outcome && "value" in outcome) item.resolve(outcome.value);
        else item.reject(outcome?.error ?? new Error("rotation lost"));
      });
    }
  }

  private rotateNow(item: PendingRotation): RefreshRotation {
    const { digest, replacement, at, audits } = item;
    // The conditional write is the whole race protection: of many requests presenting
    // the same token, exactly one sees `changes === 1`.
    const spent = this.database
      .statement(
        "UPDATE refresh_tokens SET used_at = ?, replaced_by = ? WHERE digest = ? AND used_at IS NULL AND revoked_at IS NULL",
      )
      .run(at, replacement.id, digest);
    if (spent.changes === 1) {
      this.insertNow(replacement);
      if (audits.rotated) insertAuditEvent(this.database, audits.rotated);
      return { outcome: "rotated" };
    }
    const row = this.database.statement(`SELECT ${COLUMNS} FROM refresh_tokens WHERE digest = ?`).get(digest) as
      | Row
      | undefined;
    if (!row) return { outcome: "unknown" };
    const record = rowToToken(row);
    this.database
      .statement("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
      .run(at, record.familyId);
    if (audits.reused) insertAuditEvent(this.database, audits.reused);
    return { outcome: "reused", record };
  }

  async revokeFamily(
    familyId: string,
    change: { at: number; denyJti: { jti: string; expiresAt: number } | null },
    audit: AuditEventInput | null,
  ): Promise<void> {
    this.database.transaction(() => {
      this.database
        .statement("UPDATE refresh_tokens SET revoked_at = ? WHERE family_id = ? AND revoked_at IS NULL")
        .run(change.at, familyId);
      if (change.denyJti) {
        this.database
          .statement("INSERT INTO denied_access_tokens (jti, expires_at) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING")
          .run(change.denyJti.jti, change.denyJti.expiresAt);
      }
      if (audit) insertAuditEvent(this.database, audit);
    });
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

  async prune(now: number): Promise<void> {
    this.database.transaction(() => {
      this.database.statement("DELETE FROM denied_access_tokens WHERE expires_at < ?").run(now);
      this.database.statement("DELETE FROM refresh_tokens WHERE family_expires_at < ?").run(now);
    });
  }
}
