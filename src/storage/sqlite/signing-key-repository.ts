import type { AuditEventInput, SigningKeyRecord, SigningKeyRepository } from "../types.ts";
import { insertAuditEvent } from "./audit-repository.ts";
import type { SqliteDatabase } from "./database.ts";

type Row = Record<string, string | number | Uint8Array | null>;

const COLUMNS = "kid, alg, state, public_jwk, sealed_private_key, created_at, activated_at, retired_at, publish_until";
const INSERT = `INSERT INTO signing_keys (${COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`;

function rowToKey(row: Row): SigningKeyRecord {
  return {
    kid: row.kid as string,
    alg: row.alg as SigningKeyRecord["alg"],
    state: row.state as SigningKeyRecord["state"],
    publicJwk: row.public_jwk as string,
    sealedPrivateKey: Buffer.from(row.sealed_private_key as Uint8Array),
    createdAt: row.created_at as number,
    activatedAt: row.activated_at as number | null,
    retiredAt: row.retired_at as number | null,
    publishUntil: row.publish_until as number | null,
  };
}

export class SqliteSigningKeyRepository implements SigningKeyRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  private insertNow(record: SigningKeyRecord): void {
    this.database
      .statement(INSERT)
      .run(
        record.kid,
        record.alg,
        record.state,
        record.publicJwk,
        record.sealedPrivateKey,
        record.createdAt,
        record.activatedAt,
        record.retiredAt,
        record.publishUntil,
      );
  }

  async list(now: number): Promise<SigningKeyRecord[]> {
    const rows = this.database
      .statement(
        `SELECT ${COLUMNS} FROM signing_keys WHERE publish_until IS NULL OR publish_until > ? ORDER BY created_at, kid`,
      )
      .all(now) as Row[];
    return rows.map(rowToKey);
  }

  async initialise(records: readonly SigningKeyRecord[], audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(() => {
      if (this.database.statement("SELECT 1 AS hit FROM signing_keys WHERE state = 'current'").get()) return false;
      for (const record of records) this.insertNow(record);
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async rotate(
    currentKid: string,
    change: { at: number; publishUntil: number; newNext: SigningKeyRecord },
    audit: AuditEventInput | null,
  ): Promise<boolean> {
    return this.database.transaction(() => {
      const retired = this.database
        .statement(
          "UPDATE signing_keys SET state = 'retired', retired_at = ?, publish_until = ? WHERE kid = ? AND state = 'current'",
        )
        .run(change.at, change.publishUntil, currentKid);
      if (retired.changes === 0) return false;
      this.database
        .statement("UPDATE signing_keys SET state = 'current', activated_at = ? WHERE state = 'next'")
        .run(change.at);
      this.insertNow(change.newNext);
      this.database.statement("DELETE FROM signing_keys WHERE state = 'retired' AND publish_until <= ?").run(change.at);
      if (audit) insertAuditEvent(this.database, audit);
      return true;
    });
  }

  async replace(
    discard: readonly string[],
    fresh: readonly SigningKeyRecord[],
    audit: AuditEventInput | null,
  ): Promise<void> {
    this.database.transaction(() => {
      // Deleted first: at most one current and one next key may exist at any moment.
      for (const kid of discard) this.database.statement("DELETE FROM signing_keys WHERE kid = ?").run(kid);
      for (const record of fresh) this.insertNow(record);
      if (audit) insertAuditEvent(this.database, audit);
    });
  }
}
