import assert from "node:assert/strict";
import { copyFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import { backends, tempDir } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

const sqlite = backends().find((b) => b.name === "sqlite");

// The embedded store's disk filling up (or the file turning read-only, or another process
// holding the write lock past the busy timeout) is the operator's to fix, and the client's
// to retry: a 503 like PostgreSQL being away, not a 500 that says Gatehouse has a bug.
describe("SQLite that cannot write: 503 STORAGE_UNAVAILABLE, nothing half-written, writes again after", {
  skip: !sqlite,
}, () => {
  let server: TestServer;
  let storage: SqliteStorage;
  before(async () => {
    server = await startServer(sqlite as NonNullable<typeof sqlite>);
    storage = server.store.storage as SqliteStorage;
  });
  after(() => server.close());

  const pages = () => Number(storage.database.db.prepare("PRAGMA page_count").get()?.page_count);
  const keyCount = () => Number(storage.database.db.prepare("SELECT count(*) AS n FROM api_keys").get()?.n);
  const create = () =>
    server.call("POST", "/v1/keys", { name: "full", scopes: [], metadata: { pad: "x".repeat(4000) } });

  test("a full database file", async () => {
    const before = keyCount();
    // SQLite's own limit on the file's size, reached as a full disk would be: SQLITE_FULL.
    storage.database.db.exec(`PRAGMA max_page_count = ${pages()}`);
    try {
      const refused = await create();
      assert.equal(refused.status, 503, JSON.stringify(refused.body));
      assert.match(refused.headers.get("content-type") ?? "", /^application\/problem\+json/);
      assert.equal(refused.body.code, "STORAGE_UNAVAILABLE");
      assert.equal(refused.headers.get("retry-after"), "1");
      assert.ok(!JSON.stringify(refused.body).includes("full"), "no database message in the answer");
      assert.equal(keyCount(), before);
      // Reads still work.
      assert.equal((await server.call("GET", "/v1/keys")).status, 200);
    } finally {
      storage.database.db.exec("PRAGMA max_page_count = 4294967294");
    }
    assert.equal((await create()).status, 201);
    assert.equal(keyCount(), before + 1);
  });
});

describe("SQLite database file deleted under a running server: not ready", { skip: !sqlite }, () => {
  test("ping, and so /readyz, fails once the file is gone", async () => {
    const dir = tempDir();
    const path = join(dir, "gatehouse.db");
    const storage = SqliteStorage.open(path);
    try {
      await storage.ping();
      // The open file lives on, unlinked: every write acknowledged from now on is gone at
      // the next start. Readiness must say so, where the operator's probes look.
      rmSync(dir, { recursive: true, force: true });
      await assert.rejects(storage.ping(), /deleted or replaced/);
    } finally {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a file put in its place (a copy moved over it) is not the one open either", async () => {
    const dir = tempDir();
    const path = join(dir, "gatehouse.db");
    const storage = SqliteStorage.open(path);
    try {
      copyFileSync(path, `${path}.copy`);
      renameSync(`${path}.copy`, path);
      await assert.rejects(storage.ping(), /deleted or replaced/);
    } finally {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
