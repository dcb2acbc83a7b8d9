import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PURGE_STATEMENTS as POSTGRES_PURGE } from "../../src/storage/postgres/housekeeping-repository.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { PURGE_STATEMENTS as SQLITE_PURGE } from "../../src/storage/sqlite/housekeeping-repository.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { PurgeTarget } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";

/**
 * Housekeeping deletes ended rows in batches, every pass, on tables that grow to millions
 * of rows. A batch that has to read the whole table to find its rows costs that read for
 * every batch (on SQLite on the event loop): each statement must find its rows through an
 * index on the cutoff. The plans are read from an empty store, where a planner has the
 * least reason to prefer an index; PostgreSQL is told to avoid sequential scans, which it
 * still chooses when no index can serve.
 */

/**
 * The legacy digests are read whole each pass (those whose token is gone): the table
 * only shrinks, from the refresh tokens of before migration 5, and is empty within their
 * 7-day life.
 */
const WHOLE_TABLE_ALLOWED: ReadonlySet<PurgeTarget> = new Set(["legacy_token_digests"]);

for (const backend of backends()) {
  describe(`purge statements find their rows through an index (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    const statements = backend.name === "sqlite" ? SQLITE_PURGE : POSTGRES_PURGE;
    for (const target of Object.keys(statements) as PurgeTarget[]) {
      if (WHOLE_TABLE_ALLOWED.has(target)) continue;
      test(target, async () => {
        const plan = await explain(store, statements[target], target);
        if (backend.name === "sqlite") {
          // SQLite says "SCAN <table>" for a full read; "SCAN (subquery-N)" reads a result
          // made through an index.
          const fullReads = plan.filter((line) => /^SCAN (?!\(subquery)/.test(line));
          assert.deepEqual(fullReads, [], plan.join("\n"));
          assert.ok(
            plan.some((line) => /USING .*INDEX .*<\?/.test(line)),
            `no index range on the cutoff:\n${plan.join("\n")}`,
          );
        } else {
          assert.ok(!plan.some((line) => line.includes("Seq Scan")), plan.join("\n"));
          // A cutoff checked as a filter walks an index row by row to its end.
          assert.ok(!plan.some((line) => line.trim().startsWith("Filter:")), plan.join("\n"));
        }
      });
    }
  });
}

async function explain(store: TestStore, sql: string, target: PurgeTarget): Promise<string[]> {
  const { storage } = store;
  if (storage instanceof SqliteStorage) {
    const rows = storage.database.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(1, 10);
    return rows.map((row) => String(row.detail));
  }
  assert.ok(storage instanceof PostgresStorage);
  const client = await storage.database.pool.connect();
  try {
    await client.query("SET enable_seqscan = off");
    // PostgreSQL refuses a parameter a statement does not use (as the repository knows).
    const params = target === "legacy_token_digests" ? [10] : [1, 10];
    const result = await client.query<{ "QUERY PLAN": string }>(`EXPLAIN ${sql}`, params);
    return result.rows.map((row) => row["QUERY PLAN"]);
  } finally {
    await client.query("RESET enable_seqscan");
    client.release();
  }
}
