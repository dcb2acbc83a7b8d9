/** An hour in ms: the bucket of a usage row summed per hour (key_usage_hours). */
export const HOUR_MS = 3_600_000;

/**
 * The read of one key's usage counts in [since, until), shared by both backends (as
 * token-columns.ts is for refresh tokens): minute rows, and unless `minutesOnly` the hour
 * rows housekeeping summed them into. `params`: the placeholders of the key id, since and
 * until in the backend's syntax.
 */
export function usageReadSql(minutesOnly: boolean, params: readonly [string, string, string]): string {
  const [keyId, since, until] = params;
  const rows = (table: string) =>
    `SELECT bucket, outcome, count FROM ${table} WHERE key_id = ${keyId} AND bucket >= ${since} AND bucket < ${until}`;
  return `${rows("key_usage")}${minutesOnly ? "" : ` UNION ALL ${rows("key_usage_hours")}`} ORDER BY bucket, outcome`;
}
