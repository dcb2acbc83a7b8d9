import type { UsageIncrement, UsageRepository, UsageRow } from "../types.ts";
import type { PostgresDatabase } from "./database.ts";

const HOUR = 3_600_000;

export class PostgresUsageRepository implements UsageRepository {
  private readonly database: PostgresDatabase;
  constructor(database: PostgresDatabase) {
    this.database = database;
  }

  async add(increments: readonly UsageIncrement[]): Promise<void> {
    if (increments.length === 0) return;
    // One statement for the whole batch; concurrent nodes add to the same rows safely
    // because ON CONFLICT ... DO UPDATE takes the row lock.
    await this.database.query(
      `INSERT INTO key_usage (key_id, bucket, outcome, count, last_at)
       SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[])
       ON CONFLICT (key_id, bucket, outcome) DO UPDATE SET count = key_usage.count + excluded.count,
         last_at = GREATEST(key_usage.last_at, excluded.last_at)`,
      [
        increments.map((i) => i.keyId),
        increments.map((i) => i.bucket),
        increments.map((i) => i.outcome),
        increments.map((i) => i.count),
        increments.map((i) => i.lastAt ?? null),
      ],
    );
  }

  async read(keyId: string, since: number, until: number): Promise<UsageRow[]> {
    const { rows } = await this.database.query<UsageRow>(
      `SELECT bucket, outcome, count FROM key_usage WHERE key_id = $1 AND bucket >= $2 AND bucket < $3
       UNION ALL
       SELECT bucket, outcome, count FROM key_usage_hours WHERE key_id = $1 AND bucket >= $2 AND bucket < $3
       ORDER BY bucket, outcome`,
      [keyId, since, until],
    );
    return rows;
  }

  async rollUp(before: number, limit: number): Promise<number> {
    // One statement: the rows deleted are the rows summed. SKIP LOCKED lets several nodes
    // roll up at once; the delete trigger folds each row's last use into api_keys.
    const { rows } = await this.database.query<{ n: number }>(
      `WITH moved AS (
         DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
           SELECT key_id, bucket, outcome FROM key_usage WHERE bucket < $1
           ORDER BY bucket LIMIT $2 FOR UPDATE SKIP LOCKED)
         RETURNING key_id, bucket, outcome, count),
       summed AS (
         INSERT INTO key_usage_hours (key_id, bucket, outcome, count)
         SELECT key_id, bucket - bucket % ${HOUR}, outcome, sum(count) FROM moved
         GROUP BY key_id, bucket - bucket % ${HOUR}, outcome
         ON CONFLICT (key_id, bucket, outcome) DO UPDATE SET count = key_usage_hours.count + excluded.count)
       SELECT count(*)::int AS n FROM moved`,
      [before, limit],
    );
    return rows[0]?.n ?? 0;
  }
}
