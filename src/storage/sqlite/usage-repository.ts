import type { UsageIncrement, UsageRepository, UsageRow } from "../types.ts";
import type { SqliteDatabase } from "./database.ts";

export class SqliteUsageRepository implements UsageRepository {
  private readonly database: SqliteDatabase;
  constructor(database: SqliteDatabase) {
    this.database = database;
  }

  async add(increments: readonly UsageIncrement[]): Promise<void> {
    if (increments.length === 0) return;
    this.database.background(() =>
      this.database.transaction(() => {
        const statement = this.database.statement(
          `INSERT INTO key_usage (key_id, bucket, outcome, count, last_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (key_id, bucket, outcome) DO UPDATE SET count = count + excluded.count,
           last_at = CASE WHEN last_at IS NULL OR excluded.last_at > last_at THEN excluded.last_at ELSE last_at END`,
        );
        for (const row of increments) statement.run(row.keyId, row.bucket, row.outcome, row.count, row.lastAt ?? null);
      }),
    );
  }

  async read(keyId: string, since: number, until: number): Promise<UsageRow[]> {
    const rows = this.database
      .statement(
        "SELECT bucket, outcome, count FROM key_usage WHERE key_id = ? AND bucket >= ? AND bucket < ? ORDER BY bucket, outcome",
      )
      .all(keyId, since, until);
    return rows.map((row) => ({ bucket: Number(row.bucket), outcome: String(row.outcome), count: Number(row.count) }));
  }
}
