import assert from "node:assert/strict";
import { readdirSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { loadConfig } from "../../src/config/config.ts";
import { openStorage } from "../../src/storage/open-storage.ts";
import { SQLITE_MIGRATIONS } from "../../src/storage/sqlite/migrations.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import { tempDir } from "../support/backends.ts";

// Issue 2: "the embedded default is SQLite via node:sqlite (WAL, one file under the data
// dir), with versioned migrations applied at start". Opened the way `serve` opens it.
const dir = tempDir("gatehouse-embedded-");
after(() => rmSync(dir, { recursive: true, force: true }));

test("the embedded store: one WAL-mode file under the data dir, every migration recorded once by version", async () => {
  const config = loadConfig({ GATEHOUSE_DATA_DIR: dir });
  const first = await openStorage(config);
  assert.ok(first instanceof SqliteStorage);
  const versions = () =>
    (
      first.database.statement("SELECT version FROM schema_migrations ORDER BY version").all() as Array<{
        version: number;
      }>
    ).map((row) => row.version);
  try {
    const mode = first.database.statement("PRAGMA journal_mode").get() as { journal_mode: string };
    assert.equal(mode.journal_mode, "wal");
    const expected = SQLITE_MIGRATIONS.map((migration) => migration.version);
    assert.deepEqual(versions(), expected);
    // Versions are 1, 2, 3 … with no gap, so "applied up to N" means every one up to N.
    assert.deepEqual(
      expected,
      expected.map((_, i) => i + 1),
    );
  } finally {
    await first.close();
  }
  // The database file (and, while open, SQLite's own -wal/-shm companions) and nothing else.
  const files = readdirSync(dir);
  assert.ok(files.includes("gatehouse.db"));
  for (const name of files) assert.match(name, /^gatehouse\.db(-wal|-shm)?$/);

  // A second start applies nothing again.
  const second = await openStorage(config);
  try {
    assert.ok(second instanceof SqliteStorage);
    const rows = second.database.statement("SELECT COUNT(*) AS n FROM schema_migrations").get() as { n: number };
    assert.equal(rows.n, SQLITE_MIGRATIONS.length);
  } finally {
    await second.close();
  }
});
