import DataLoader from "dataloader";
import type pg from "pg";
import { BusyError, StorageUnavailableError } from "../../errors/gatehouse-error.ts";
import type { PostgresDatabase } from "./database.ts";

/** Keys per statement at most (a busier turn makes several statements). */
export const BATCH_MAX = 128;

/**
 * Work on a hot path asked for in the same turn of the event loop goes to PostgreSQL as one
 * statement: point reads (a key by digest on every verification; the denylist, the refresh
 * family and the user on every `/auth/me`) as one `= ANY($1)`, and refresh rotations as
 * one spend (token-repository.ts). Each statement is a write to a pooled connection, a
 * wake-up of its backend and a read of the answer (for a write, also a commit that waits for its
 * WAL flush), and on the benchmark machine that, not the work itself, was most of what
 * such a request cost (docs/benchmarks.md, fourteenth session). No cache: every lookup
 * reads the table as it is when its batch runs, which is after the lookup was asked for.
 *
 * A statement that fails because the database is unavailable, or for a deadlock that came
 * back on each of PostgresDatabase's retries (BUSY), fails everything it carried, with the
 * same error (503). Any other failure is about the values asked for (PostgreSQL refuses a
 * whole text[] with a NUL in one element, 22021; a successor whose id is taken): then each
 * key is asked alone, so one request's value fails only its own request, as before batching.
 *
 * `many` answers for each key in the order asked (DataLoader's contract); an Error as an
 * answer fails that key alone, and is not retried.
 */
export function batchedStatement<K, V>(many: (keys: readonly K[]) => Promise<Array<V | Error>>): DataLoader<K, V> {
  return new DataLoader(
    async (keys: readonly K[]): Promise<Array<V | Error>> => {
      try {
        return await many(keys);
      } catch (error) {
        // A conflict that outlived PostgresDatabase's retries is not about one value:
        // splitting the batch would only make more statements meet it.
        if (keys.length === 1 || error instanceof StorageUnavailableError || error instanceof BusyError) throw error;
        return Promise.all(
          keys.map((key) =>
            many([key]).then(
              (answers) => answers[0] as V | Error,
              (alone: unknown) => (alone instanceof Error ? alone : new Error(String(alone))),
            ),
          ),
        );
      }
    },
    {
      cache: false,
      maxBatchSize: BATCH_MAX,
      // After the I/O callbacks of this turn, not after the current microtasks: requests
      // that arrived together are handled in separate callbacks.
      batchScheduleFn: (run) => setImmediate(run),
    },
  );
}

/**
 * A batched "which of these are there": `sql` takes the keys asked as `$1` (a text[]) and
 * returns the ones present as a column named `key`; each is answered true or false.
 */
export function batchedMembership(database: PostgresDatabase, sql: string): DataLoader<string, boolean> {
  return batchedStatement(async (keys: readonly string[]) => {
    const { rows } = await database.query<{ key: string }>(sql, [keys]);
    const present = new Set(rows.map((row) => row.key));
    return keys.map((key) => present.has(key));
  });
}

/**
 * A batched point read: `sql` takes the keys asked as `$1` and returns the rows found;
 * each key is answered with the row whose name (`nameOfRow`) is the key's (`nameOf`),
 * converted, or null.
 */
export function batchedRows<K, R extends pg.QueryResultRow, V>(
  database: PostgresDatabase,
  sql: string,
  names: { of: (key: K) => string; ofRow: (row: R) => string },
  convert: (row: R) => V,
): DataLoader<K, V | null> {
  return batchedStatement(async (keys: readonly K[]) => {
    const { rows } = await database.query<R>(sql, [keys]);
    const found = new Map(rows.map((row) => [names.ofRow(row), row]));
    return keys.map((key) => {
      const row = found.get(names.of(key));
      return row === undefined ? null : convert(row);
    });
  });
}
