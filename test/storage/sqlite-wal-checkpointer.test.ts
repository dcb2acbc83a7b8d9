import assert from "node:assert/strict";
import { existsSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { SqliteDatabase } from "../../src/storage/sqlite/database.ts";
import { SqliteHousekeepingRepository } from "../../src/storage/sqlite/housekeeping-repository.ts";
import { SqliteKeyRepository } from "../../src/storage/sqlite/key-repository.ts";
import { migrateSqlite } from "../../src/storage/sqlite/migrations.ts";
import { SqliteUsageRepository } from "../../src/storage/sqlite/usage-repository.ts";
import { WalCheckpointer } from "../../src/storage/sqlite/wal-checkpointer.ts";
import { tempDir } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

async function eventually(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`never happened: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test("the WAL is checkpointed by the worker, not by the committing connection", async () => {
  const dir = tempDir();
  const path = join(dir, "wal.db");
  const database = new SqliteDatabase(path);
  const checkpointer = new WalCheckpointer(database, path, {
    intervalMs: 5,
    fallbackPages: 100_000,
    startAfterChanges: 0,
  });
  try {
    assert.equal(database.statement("PRAGMA wal_autocheckpoint").get()?.wal_autocheckpoint, 100_000);
    database.db.exec("CREATE TABLE t (v BLOB)");
    const sizeBefore = statSync(path).size;
    database.transaction(() => {
      for (let i = 0; i < 200; i++) database.statement("INSERT INTO t (v) VALUES (randomblob(1000))").run();
    });
    // The commit put the pages in the WAL; only a checkpoint copies them into the file.
    await eventually(() => statSync(path).size > sizeBefore + 150_000, "pages copied back into the database file");
    assert.equal(database.statement("SELECT count(*) AS n FROM t").get()?.n, 200);
  } finally {
    await checkpointer.stop();
    database.close();
  }
  // Closing the last connection removes the WAL: the worker's connection is closed too.
  assert.equal(existsSync(`${path}-wal`), false);
  rmSync(dir, { recursive: true, force: true });
});

test("the worker starts only once writes are heavy; a quiet store keeps SQLite's own checkpoints", async () => {
  const dir = tempDir();
  const path = join(dir, "wal.db");
  const database = new SqliteDatabase(path);
  const checkpointer = new WalCheckpointer(database, path, { startAfterChanges: 50, probeIntervalMs: 5 });
  try {
    database.db.exec("CREATE TABLE t (v INTEGER)");
    database.statement("INSERT INTO t (v) VALUES (1)").run();
    // Several probes go by with one change: no worker, SQLite's default checkpoint.
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(checkpointer.running, false);
    assert.equal(database.statement("PRAGMA wal_autocheckpoint").get()?.wal_autocheckpoint, 1000);
    database.transaction(() => {
      for (let i = 0; i < 100; i++) database.statement("INSERT INTO t (v) VALUES (?)").run(i);
    });
    await eventually(() => checkpointer.running, "the worker started");
    assert.equal(database.statement("PRAGMA wal_autocheckpoint").get()?.wal_autocheckpoint, 20_000);
  } finally {
    await checkpointer.stop();
    database.close();
  }
  assert.equal(checkpointer.running, false);
  rmSync(dir, { recursive: true, force: true });
});

test("usage flushes and purges, however large, do not start the worker; writes of requests do", async () => {
  const dir = tempDir();
  const path = join(dir, "wal.db");
  const database = new SqliteDatabase(path);
  migrateSqlite(database);
  const checkpointer = new WalCheckpointer(database, path, { startAfterChanges: 50, probeIntervalMs: 5 });
  try {
    // Real keys: purging a usage row with a last use also updates its key (a trigger folds
    // the last use in), and that update is logged as a key change (another trigger).
    const keys = Array.from({ length: 5 }, () => keyRecord(0));
    await new SqliteKeyRepository(database).insertMany(keys);
    const usage = new SqliteUsageRepository(database);
    for (let flush = 0; flush < 5; flush++) {
      await usage.add(
        Array.from({ length: 2_000 }, (_, i) => ({
          keyId: (keys[flush] as (typeof keys)[number]).id,
          bucket: i * 60_000,
          outcome: "VALID",
          count: 1,
          lastAt: i * 60_000 + 1,
        })),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(checkpointer.running, false, "10,000 usage rows started the worker");
    const housekeeping = new SqliteHousekeepingRepository(database);
    const changesBefore = database.totalChanges();
    assert.equal(await housekeeping.purge("usage", 2_000 * 60_000, 100_000), 10_000);
    assert.ok(database.totalChanges() - changesBefore > 10_000, "the purge's triggers changed rows too");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(checkpointer.running, false, "purging 10,000 rows started the worker");
    assert.equal(database.statement("PRAGMA wal_autocheckpoint").get()?.wal_autocheckpoint, 1000);
    database.db.exec("CREATE TABLE t (v INTEGER)");
    database.transaction(() => {
      for (let i = 0; i < 100; i++) database.statement("INSERT INTO t (v) VALUES (?)").run(i);
    });
    await eventually(() => checkpointer.running, "the worker started");
  } finally {
    await checkpointer.stop();
    database.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

test("stop is idempotent", async () => {
  const dir = tempDir();
  const path = join(dir, "wal.db");
  const database = new SqliteDatabase(path);
  const checkpointer = new WalCheckpointer(database, path, { startAfterChanges: 0 });
  await Promise.all([checkpointer.stop(), checkpointer.stop()]);
  await checkpointer.stop();
  database.close();
  rmSync(dir, { recursive: true, force: true });
});
