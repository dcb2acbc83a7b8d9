import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, describe, test } from "node:test";
import { SqliteDatabase } from "../../src/storage/sqlite/database.ts";
import { GroupCommit } from "../../src/storage/sqlite/group-commit.ts";
import { tempDir } from "../support/backends.ts";

describe("SQLite group commit", () => {
  let dir: string;
  let path: string;
  let database: SqliteDatabase;
  let transactions: number;

  beforeEach(() => {
    dir = tempDir();
    path = join(dir, "group.db");
    database = new SqliteDatabase(path);
    database.db.exec(`
      CREATE TABLE parent (id INTEGER PRIMARY KEY);
      CREATE TABLE item (name TEXT PRIMARY KEY, parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
    `);
    transactions = 0;
    const transaction = database.transaction.bind(database);
    database.transaction = <T>(work: () => T): T => {
      transactions++;
      return transaction(work);
    };
  });
  afterEach(() => {
    database.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const insert =
    (name: string, parent: number | null = null) =>
    () =>
      database.statement("INSERT INTO item (name, parent) VALUES (?, ?)").run(name, parent).changes;
  /** What another connection sees: committed rows only. */
  const committedNames = () => {
    const other = new DatabaseSync(path, { readOnly: true });
    try {
      return other
        .prepare("SELECT name FROM item ORDER BY name")
        .all()
        .map((row) => row.name);
    } finally {
      other.close();
    }
  };

  test("units that arrive together share one transaction, and each settles only once it is committed", async () => {
    const commit = new GroupCommit(database);
    const seen: unknown[][] = [];
    const units = ["a", "b", "c"].map((name) =>
      commit.run(insert(name)).then((changes) => {
        // Settled after the commit: no transaction open, the row visible to another connection.
        seen.push([changes, database.db.isTransaction, committedNames().includes(name)]);
      }),
    );
    await Promise.all(units);
    assert.equal(transactions, 1);
    assert.deepEqual(seen, [
      [1, false, true],
      [1, false, true],
      [1, false, true],
    ]);
  });

  test("a unit that throws is undone alone; the others commit", async () => {
    const commit = new GroupCommit(database);
    const results = await Promise.allSettled([
      commit.run(insert("a")),
      commit.run(() => {
        insert("b")();
        insert("a")(); // primary key violation after b was written: b must be undone too
      }),
      commit.run(insert("c")),
    ]);
    assert.deepEqual(
      results.map((result) => result.status),
      ["fulfilled", "rejected", "fulfilled"],
    );
    assert.equal(transactions, 1);
    assert.deepEqual(committedNames(), ["a", "c"]);
  });

  test("when the commit fails, every unit of the batch is rejected and nothing is written", async () => {
    const commit = new GroupCommit(database);
    // A deferred foreign key is checked at COMMIT: the batch's commit fails as a whole.
    const results = await Promise.allSettled([commit.run(insert("a")), commit.run(insert("b", 42))]);
    assert.deepEqual(
      results.map((result) => result.status),
      ["rejected", "rejected"],
    );
    assert.equal(database.db.isTransaction, false);
    assert.deepEqual(committedNames(), []);
    // The next batch is unaffected.
    await commit.run(insert("c"));
    assert.deepEqual(committedNames(), ["c"]);
  });

  test("batches are bounded by maxBatch", async () => {
    const commit = new GroupCommit(database, { maxBatch: 2 });
    await Promise.all(["a", "b", "c", "d", "e"].map((name) => commit.run(insert(name))));
    assert.equal(transactions, 3);
    assert.deepEqual(committedNames(), ["a", "b", "c", "d", "e"]);
  });

  test("units that arrive after a commit go into the next one", async () => {
    const commit = new GroupCommit(database);
    await commit.run(insert("a"));
    await commit.run(insert("b"));
    assert.equal(transactions, 2);
  });
});
