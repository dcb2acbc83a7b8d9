import type { HousekeepingRepository, PurgeTarget } from "../types.ts";
import type { PostgresDatabase } from "./database.ts";
import { takeUsageHousekeepingLock } from "./usage-repository.ts";

/**
 * Each statement deletes one bounded batch; SKIP LOCKED lets several nodes purge at once
 * without waiting on each other's rows (and never blocks a request holding a row).
 */
export const PURGE_STATEMENTS: Record<PurgeTarget, string> = {
  ended_keys: `DELETE FROM api_keys WHERE digest IN (
      SELECT digest FROM api_keys WHERE expires_at < $1 OR revoked_at < $1
      LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  usage: `DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage WHERE bucket < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  usage_hours: `DELETE FROM key_usage_hours WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage_hours WHERE bucket < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  // Oldest first through the index on \`at\` (ordered by id, the primary key's index was
  // walked to its end, checking \`at\` row by row, whenever nothing was old enough).
  audit: `DELETE FROM audit_events WHERE id IN (
      SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  refresh_tokens: `DELETE FROM refresh_tokens WHERE id IN (
      SELECT id FROM refresh_tokens WHERE family_expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  // No cutoff, only a limit ($1): the digest goes once its token has (pruned, or its user
  // deleted).
  legacy_token_digests: `DELETE FROM refresh_token_legacy_digests WHERE digest IN (
      SELECT l.digest FROM refresh_token_legacy_digests l
      WHERE NOT EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.id = l.id)
      LIMIT $1 FOR UPDATE OF l SKIP LOCKED)`,
  denied_access_tokens: `DELETE FROM denied_access_tokens WHERE jti IN (
      SELECT jti FROM denied_access_tokens WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  sessions: `DELETE FROM sessions WHERE digest IN (
      SELECT digest FROM sessions WHERE expires_at < $1 OR idle_expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
};

export class PostgresHousekeepingRepository implements HousekeepingRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
  }

  async purge(target: PurgeTarget, before: number, limit: number): Promise<number> {
    if (target === "usage") {
      // Minute rows run the trigger that updates api_keys: one node at a time, as the
      // roll-up (usage-repository.ts says why).
      return this.database.transaction(async (client) => {
        if (!(await takeUsageHousekeepingLock(client, this.database.schema))) return 0;
        return (await client.query(PURGE_STATEMENTS.usage, [before, limit])).rowCount ?? 0;
      });
    }
    // PostgreSQL refuses a parameter a statement does not use (it cannot type it).
    const params = target === "legacy_token_digests" ? [limit] : [before, limit];
    const result = await this.database.query(PURGE_STATEMENTS[target], params);
    return result.rowCount ?? 0;
  }
}
