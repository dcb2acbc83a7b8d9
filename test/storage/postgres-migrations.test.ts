import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { afterEach, describe, test } from "node:test";
import pg from "pg";
import { StorageUnavailableError } from "../../src/errors/gatehouse-error.ts";
import { PostgresDatabase } from "../../src/storage/postgres/database.ts";
import {
  MIGRATION_LOCK_ID,
  migratePostgres,
  POSTGRES_MIGRATIONS,
  type PostgresMigration,
} from "../../src/storage/postgres/migrations.ts";
import { backends, TEST_DATABASE_URL } from "../support/backends.ts";

/**
 * Migrations are not requests: they run on a connection without the request timeouts
 * (migration 5 copies every refresh token), and a node waits for another's migration as
 * long as it takes. Each migration commits on its own, as on SQLite.
 */
const skip = !backends().some((b) => b.name === "postgres");
/** Far below anything a migration or a wait for the lock takes here. */
const TINY_TIMEOUT_MS = 100;

async function versions(database: PostgresDatabase): Promise<number[]> {
  const { rows } = await database.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
  return rows.map((row) => row.version);
}

/** A statement cut by the timeout: a 503 for the client, with PostgreSQL's reason kept as the cause. */
function cutByTimeout(error: unknown): boolean {
  assert.ok(error instanceof StorageUnavailableError, String(error));
  assert.equal((error.cause as { code?: unknown }).code, "57014");
  return true;
}

describe("PostgreSQL migrations and the request timeouts", { skip }, () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A database handle on a schema of its own, with a tiny statement timeout. */
  function open(): PostgresDatabase {
    const schema = `gh_test_${randomBytes(6).toString("hex")}`;
    const database = new PostgresDatabase(TEST_DATABASE_URL, {
      schema,
      max: 2,
      statementTimeoutMs: TINY_TIMEOUT_MS,
    });
    cleanups.push(async () => {
      await database.close();
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    });
    return database;
  }

  test("a migration step longer than the statement timeout applies", async () => {
    const database = open();
    // The pool's requests do get cut at the tiny timeout.
    await assert.rejects(database.query("SELECT pg_sleep(0.5)"), cutByTimeout);
    const slow: PostgresMigration = { version: 1001, name: "slow", sql: "SELECT pg_sleep(0.5)" };
    await migratePostgres(database, { migrations: [...POSTGRES_MIGRATIONS, slow] });
    assert.deepEqual(await versions(database), [...POSTGRES_MIGRATIONS.map((m) => m.version), 1001]);
  });

  test("a request cut by the statement timeout is STORAGE_UNAVAILABLE (503), in a transaction too", async () => {
    const database = open();
    await assert.rejects(database.query("SELECT pg_sleep(0.5)"), cutByTimeout);
    await assert.rejects(
      database.transaction((client) => client.query("SELECT pg_sleep(0.5)")),
      cutByTimeout,
    );
  });

  test("a node waits for another's migration lock longer than the statement timeout, then starts", async () => {
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    cleanups.push(() => holder.end());
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_ID]);
    const database = open();
    let released = false;
    const migrated = migratePostgres(database).then(() => released);
    // Five times the timeout; without the fix the wait for the lock was cancelled by then.
    await new Promise((resolve) => setTimeout(resolve, 5 * TINY_TIMEOUT_MS));
    released = true;
    await holder.query("COMMIT");
    assert.equal(await migrated, true, "finished only once the lock was released");
    assert.deepEqual(
      await versions(database),
      POSTGRES_MIGRATIONS.map((m) => m.version),
    );
  });

  test("each migration commits on its own: a failing one keeps those before it, and the next start resumes", async () => {
    const database = open();
    const good: PostgresMigration = { version: 1001, name: "good", sql: "CREATE TABLE t1001 (x INTEGER)" };
    const bad: PostgresMigration = { version: 1002, name: "bad", sql: "CREATE TABLE t1002 (x INTEGER); SELECT 1/0" };
    await assert.rejects(migratePostgres(database, { migrations: [...POSTGRES_MIGRATIONS, good, bad] }), {
      code: "22012",
    });
    assert.deepEqual(await versions(database), [...POSTGRES_MIGRATIONS.map((m) => m.version), 1001]);
    assert.equal((await database.query("SELECT to_regclass('t1002') AS t")).rows[0]?.t, null);
    const fixed: PostgresMigration = { version: 1002, name: "fixed", sql: "CREATE TABLE t1002 (x INTEGER)" };
    await migratePostgres(database, { migrations: [...POSTGRES_MIGRATIONS, good, fixed] });
    assert.deepEqual(await versions(database), [...POSTGRES_MIGRATIONS.map((m) => m.version), 1001, 1002]);
  });
});
