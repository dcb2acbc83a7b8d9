import type { HousekeepingRepository, PurgeTarget } from "../types.ts";
import type { PostgresDatabase } from "./database.ts";
import { takeUsageHousekeepingLock } from "./usage-repository.ts";

/**
 * Each statement deletes one bounded batch; SKIP LOCKED lets several nodes purge at once
 * without waiting on each other's rows (and never blocks a request holding a row).
 */
const STATEMENTS: Record<PurgeTarget, string> = {
  ended_keys: `DELETE FROM api_keys WHERE digest IN (
      SELECT digest FROM api_keys WHERE expires_at < $1 OR revoked_at < $1
      LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  usage: `DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage WHERE bucket < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  usage_hours: `DELETE FROM key_usage_hours WHERE (key_id, bucket, outcome) IN (
      SELECT key_id, bucket, outcome FROM key_usage_hours WHERE bucket < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)`,
  audit: `DELETE FROM audit_events WHERE id IN (
      SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`,
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
        return (await client.query(STATEMENTS.usage, [before, limit])).rowCount ?? 0;
      });
    }
    const result = await this.database.query(STATEMENTS[target], [before, limit]);
    return result.rowCount ?? 0;
  }
}
