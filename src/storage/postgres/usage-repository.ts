import type { UsageIncrement, UsageRepository, UsageRow } from "../types.ts";
import { HOUR_MS, usageReadSql } from "../usage-columns.ts";
import type { PostgresDatabase, Queryable } from "./database.ts";

/** "usag" */
const USAGE_HOUSEKEEPING_LOCK = 0x7573_6167;

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

  async read(
    keyId: string,
    since: number,
    until: number,
    options: { minutesOnly?: boolean } = {},
  ): Promise<UsageRow[]> {
    const { rows } = await this.database.query<UsageRow>(
      usageReadSql(options.minutesOnly === true, ["$1", "$2", "$3"]),
      [keyId, since, until],
    );
    return rows;
  }

  async rollUp(before: number, limit: number): Promise<number> {
    // One node at a time: the delete trigger folds each row's last use into api_keys, and
    // two nodes doing that for many keys lock api_keys rows in different orders and
    // deadlock (seen with four nodes). A node that finds the lock taken skips its turn.
    return this.database.transaction(async (client) => {
      if (!(await takeUsageHousekeepingLock(client, this.database.schema))) return 0;
      return rollUpBatch(client, before, limit);
    });
  }
}

/**
 * The transaction-scoped lock that usage housekeeping (this roll-up, and the purge of
 * minute rows, which runs the same trigger) takes; false when another node holds it.
 * Advisory locks are database-wide: the second key, from the schema's name, keeps
 * deployments in other schemas of the same database out of each other's way.
 */
export async function takeUsageHousekeepingLock(client: Queryable, schema: string): Promise<boolean> {
  const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_xact_lock($1, $2) AS locked", [
    USAGE_HOUSEKEEPING_LOCK,
    int32Hash(schema),
  ]);
  return rows[0]?.locked === true;
}

/** FNV-1a of the name, as a signed 32-bit integer (an advisory lock's key half). */
function int32Hash(name: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 0x01000193);
  return hash | 0;
}

async function rollUpBatch(client: Queryable, before: number, limit: number): Promise<number> {
  // One statement: the rows deleted are the rows summed.
  const { rows } = await client.query<{ n: number }>(
    `WITH moved AS (
       DELETE FROM key_usage WHERE (key_id, bucket, outcome) IN (
         SELECT key_id, bucket, outcome FROM key_usage WHERE bucket < $1
         ORDER BY bucket LIMIT $2 FOR UPDATE SKIP LOCKED)
       RETURNING key_id, bucket, outcome, count),
     summed AS (
       INSERT INTO key_usage_hours (key_id, bucket, outcome, count)
       SELECT key_id, bucket - bucket % ${HOUR_MS}, outcome, sum(count) FROM moved
       GROUP BY key_id, bucket - bucket % ${HOUR_MS}, outcome
       ON CONFLICT (key_id, bucket, outcome) DO UPDATE SET count = key_usage_hours.count + excluded.count)
     SELECT count(*)::int AS n FROM moved`,
    [before, limit],
  );
  return rows[0]?.n ?? 0;
}
