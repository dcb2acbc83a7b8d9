import type { HousekeepingRepository, PurgeTarget } from "../types.ts";
import type { SqliteDatabase } from "./database.ts";

/** Each statement deletes one bounded batch, chosen through an index. */
export const PURGE_STATEMENTS: Record<PurgeTarget, string> = {
  // A key ends when revoked or expired; it is kept a while after for the audit trail.
  // Each side limited on its own, through its own index: as one UNION, SQLite merged two
  // scans of the whole table in digest order (~80 ms on the event loop per 300,000 keys,
  // every pass, even with nothing to delete). A batch is then up to twice the limit.
  ended_keys: `DELETE FROM api_keys WHERE digest IN (
      SELECT digest FROM (SELECT digest FROM api_keys WHERE expires_at < ?1 LIMIT ?2)
      UNION ALL SELECT digest FROM (SELECT digest FROM api_keys WHERE revoked_at < ?1 LIMIT ?2))`,
  usage: `DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage WHERE bucket < ?1 LIMIT ?2)`,
  usage_hours: `DELETE FROM key_usage_hours WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage_hours WHERE bucket < ?1 LIMIT ?2)`,
  // Oldest first through the index on \`at\` (ordered by id, SQLite walked the whole table
  // in id order when nothing was old enough).
  audit: "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
  refresh_tokens: `DELETE FROM refresh_tokens WHERE id IN (
      SELECT id FROM refresh_tokens WHERE family_expires_at < ?1 LIMIT ?2)`,
  // No cutoff (?1): the digest goes once its token has (pruned, or its user deleted).
  legacy_token_digests: `DELETE FROM refresh_token_legacy_digests WHERE digest IN (
      SELECT l.digest FROM refresh_token_legacy_digests l
      WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.id = l.id) LIMIT ?2)`,
  denied_access_tokens: `DELETE FROM denied_access_tokens WHERE jti IN (
      SELECT jti FROM denied_access_tokens WHERE expires_at < ?1 LIMIT ?2)`,
  sessions: `DELETE FROM sessions WHERE digest IN (
      SELECT digest FROM sessions WHERE expires_at < ?1 OR idle_expires_at < ?1 LIMIT ?2)`,
};

export class SqliteHousekeepingRepository implements HousekeepingRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async purge(target: PurgeTarget, before: number, limit: number): Promise<number> {
    // Background work, like the usage flush: a large purge (with the rows its triggers
    // change) must not start the WAL checkpointer's thread for the life of the process.
    return this.database.background(() =>
      Number(this.database.statement(PURGE_STATEMENTS[target]).run(before, limit).changes),
    );
  }
}
