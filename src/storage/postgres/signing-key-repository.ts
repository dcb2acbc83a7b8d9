import type { AuditEventInput, SigningKeyRecord, SigningKeyRepository } from "../types.ts";
import { insertAuditEvents } from "./audit-repository.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";

const COLUMNS = "kid, alg, state, public_jwk, sealed_private_key, created_at, activated_at, retired_at, publish_until";
/** Serialises keyring changes across nodes (first keys, rotation). */
const KEYRING_LOCK = 0x6b_6579; // "key"

interface Row {
  kid: string;
  alg: SigningKeyRecord["alg"];
  state: SigningKeyRecord["state"];
  public_jwk: string;
  sealed_private_key: Buffer;
  created_at: number;
  activated_at: number | null;
  retired_at: number | null;
  publish_until: number | null;
}

function toKey(row: Row): SigningKeyRecord {
  return {
    kid: row.kid,
    alg: row.alg,
    state: row.state,
    publicJwk: row.public_jwk,
    sealedPrivateKey: row.sealed_private_key,
    createdAt: row.created_at,
    activatedAt: row.activated_at,
    retiredAt: row.retired_at,
    publishUntil: row.publish_until,
  };
}

async function insert(client: Queryable, record: SigningKeyRecord): Promise<void> {
  await client.query(`INSERT INTO signing_keys (${COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, [
    record.kid,
    record.alg,
    record.state,
    record.publicJwk,
    record.sealedPrivateKey,
    record.createdAt,
    record.activatedAt,
    record.retiredAt,
    record.publishUntil,
  ]);
}

export class PostgresSigningKeyRepository implements SigningKeyRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
  }

  async list(now: number): Promise<SigningKeyRecord[]> {
    const { rows } = await this.database.query<Row>(
      `SELECT ${COLUMNS} FROM signing_keys WHERE publish_until IS NULL OR publish_until > $1 ORDER BY created_at, kid`,
      [now],
    );
    return rows.map(toKey);
  }

  async initialise(records: readonly SigningKeyRecord[], audit: AuditEventInput | null): Promise<boolean> {
    return this.database.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [KEYRING_LOCK]);
      const { rows } = await client.query("SELECT 1 FROM signing_keys WHERE state = 'current'");
      if (rows.length > 0) return false;
      for (const record of records) await insert(client, record);
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async rotate(
    currentKid: string,
    change: { at: number; publishUntil: number; newNext: SigningKeyRecord },
    audit: AuditEventInput | null,
  ): Promise<boolean> {
    return this.database.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [KEYRING_LOCK]);
      const retired = await client.query(
        "UPDATE signing_keys SET state = 'retired', retired_at = $1, publish_until = $2 WHERE kid = $3 AND state = 'current'",
        [change.at, change.publishUntil, currentKid],
      );
      if (retired.rowCount === 0) return false;
      await client.query("UPDATE signing_keys SET state = 'current', activated_at = $1 WHERE state = 'next'", [
        change.at,
      ]);
      await insert(client, change.newNext);
      await client.query("DELETE FROM signing_keys WHERE state = 'retired' AND publish_until <= $1", [change.at]);
      if (audit) await insertAuditEvents(client, [audit]);
      return true;
    });
  }

  async replace(
    discard: readonly string[],
    fresh: readonly SigningKeyRecord[],
    audit: AuditEventInput | null,
  ): Promise<void> {
    await this.database.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [KEYRING_LOCK]);
      // Deleted first: at most one current and one next key may exist at any moment.
      await client.query("DELETE FROM signing_keys WHERE kid = ANY($1::text[])", [discard]);
      for (const record of fresh) await insert(client, record);
      if (audit) await insertAuditEvents(client, [audit]);
    });
  }
}
