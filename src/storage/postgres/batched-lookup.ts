import DataLoader from "dataloader";

/** Keys per statement at most (a busier turn makes several statements). */
export const LOOKUP_BATCH_MAX = 128;

/**
 * Point reads on a hot path (a key by digest on every verification; the denylist, the
 * refresh family and the user on every `/auth/me`) asked for in the same turn of the event
 * loop go to PostgreSQL as one statement. Each statement is a write to a pooled connection,
 * a wake-up of its backend and a read of the answer, and on the benchmark machine that,
 * not the index lookup, was most of what such a request cost (docs/benchmarks.md,
 * fourteenth session). No cache: every lookup reads the table as it is when its batch
 * runs, which is after the lookup was asked for. A statement that fails fails every
 * lookup it carried, with the same error.
 *
 * `many` answers for each key in the order asked (DataLoader's contract).
 */
export function batchedLookup<K, V>(many: (keys: readonly K[]) => Promise<V[]>): DataLoader<K, V> {
  return new DataLoader(many, {
    cache: false,
    maxBatchSize: LOOKUP_BATCH_MAX,
    // After the I/O callbacks of this turn, not after the current microtasks: requests
    // that arrived together are handled in separate callbacks.
    batchScheduleFn: (run) => setImmediate(run),
  });
}
