import type { UsageIncrement, UsageRepository, UsageRow } from "../types.ts";
import type { PostgresDatabase } from "./database.ts";

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
      "SELECT bucket, outcome, count FROM key_usage WHERE key_id = $1 AND bucket >= $2 AND bucket < $3 ORDER BY bucket, outcome",
      [keyId, since, until],
    );
    return rows;
  }
}
