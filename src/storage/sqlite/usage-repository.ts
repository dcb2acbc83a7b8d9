import type { UsageIncrement, UsageRepository, UsageRow } from "../types.ts";
import { HOUR_MS, usageReadSql } from "../usage-columns.ts";
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

  async read(
    keyId: string,
    since: number,
    until: number,
    options: { minutesOnly?: boolean } = {},
  ): Promise<UsageRow[]> {
    const rows = this.database
      .statement(usageReadSql(options.minutesOnly === true, ["?1", "?2", "?3"]))
      .all(keyId, since, until);
    return rows.map((row) => ({ bucket: Number(row.bucket), outcome: String(row.outcome), count: Number(row.count) }));
  }

  async rollUp(before: number, limit: number): Promise<number> {
    // The same rows twice (one order, one transaction, one connection): summed into
    // their hours, then deleted; the delete trigger folds their last use into api_keys.
    const oldest = `SELECT key_id, bucket, outcome, count FROM key_usage WHERE bucket < ?1
      ORDER BY bucket, key_id, outcome LIMIT ?2`;
    return this.database.background(() =>
      this.database.transaction(() => {
        this.database
          .statement(
            `INSERT INTO key_usage_hours (key_id, bucket, outcome, count)
             SELECT key_id, bucket - bucket % ${HOUR_MS}, outcome, sum(count) FROM (${oldest})
             WHERE true GROUP BY key_id, bucket - bucket % ${HOUR_MS}, outcome
             ON CONFLICT (key_id, bucket, outcome) DO UPDATE SET count = count + excluded.count`,
          )
          .run(before, limit);
        return Number(
          this.database
            .statement(
              `DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
                 SELECT key_id, bucket, outcome FROM (${oldest}))`,
            )
            .run(before, limit).changes,
        );
      }),
    );
  }
}
