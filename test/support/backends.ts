import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { Storage } from "../../src/storage/types.ts";

/** A fresh, empty store; `dispose` closes it and removes what it created. */
export interface TestStore {
  storage: Storage;
  dispose(): Promise<void>;
}

export interface Backend {
  name: "sqlite" | "postgres";
  create(): Promise<TestStore>;
}

export function tempDir(prefix = "gatehouse-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const sqlite: Backend = {
  name: "sqlite",
  async create() {
    const dir = tempDir();
    const storage = SqliteStorage.open(join(dir, "gatehouse.db"));
    return {
      storage,
      async dispose() {
        await storage.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

/** The machine's PostgreSQL (trust auth, database `test`); overridable for other setups. */
export const TEST_DATABASE_URL = process.env.GATEHOUSE_TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";

/** Each store gets a schema of its own in the test database, dropped afterwards. */
const postgres: Backend = {
  name: "postgres",
  async create() {
    const schema = `gh_test_${randomBytes(6).toString("hex")}`;
    const storage = await PostgresStorage.open(TEST_DATABASE_URL, { schema, poolSize: 4 });
    return {
      storage,
      async dispose() {
        await storage.close();
        const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
        await client.connect();
        try {
          await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
        } finally {
          await client.end();
        }
      },
    };
  },
};

/**
 * Every backend the suites run on. GATEHOUSE_TEST_BACKENDS narrows it (e.g. "sqlite")
 * for a quick local run; CI runs them all.
 */
export function backends(): Backend[] {
  const all: Backend[] = [sqlite, postgres];
  const wanted = process.env.GATEHOUSE_TEST_BACKENDS?.split(",").map((s) => s.trim());
  return wanted ? all.filter((b) => wanted.includes(b.name)) : all;
}
