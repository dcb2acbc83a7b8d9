import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import pg from "pg";
import { Housekeeper } from "../../src/housekeeping/housekeeper.ts";
import { newId } from "../../src/lib/ids.ts";
import { POSTGRES_MIGRATIONS } from "../../src/storage/postgres/migrations.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { SQLITE_MIGRATIONS } from "../../src/storage/sqlite/migrations.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { RefreshTokenRecord, Storage } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken, refreshTokenRef } from "../../src/tokens/opaque-token.ts";
import { backends, TEST_DATABASE_URL, tempDir } from "../support/backends.ts";

/**
 * Migration 5 keys refresh tokens by their id. A token issued before it (a bare secret,
 * stored by the digest of the whole token) must keep working until it expires: it rotates
 * once into the new form, and presenting it again is still a reuse.
 */
const NOW = Date.now();
const USER_ID = newId("usr", NOW);
const TOKEN_ID = newId("rtk", NOW);
const LEGACY_TOKEN = newOpaqueToken();
const USER_ROW = [USER_ID, "legacy@example.com", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", "[]", "active"];
const TOKEN_ROW = [
  digestOpaqueToken(LEGACY_TOKEN),
  TOKEN_ID,
  "fam_legacy",
  USER_ID,
  "gatehouse",
  "",
  NOW,
  NOW + 3_600_000,
  NOW + 3_600_000,
];

function replacement(now: number): RefreshTokenRecord {
  return {
    id: newId("rtk", now),
    digest: digestOpaqueToken(newOpaqueToken()),
    familyId: "fam_legacy",
    userId: USER_ID,
    clientId: "gatehouse",
    scope: "",
    createdAt: now,
    familyExpiresAt: NOW + 3_600_000,
    expiresAt: NOW + 3_600_000,
    usedAt: null,
    replacedBy: null,
    revokedAt: null,
  };
}

async function legacyTokenStillWorks(storage: Storage): Promise<void> {
  const ref = refreshTokenRef(LEGACY_TOKEN);
  assert.deepEqual(ref, { id: null, digest: digestOpaqueToken(LEGACY_TOKEN) });
  if (!ref) return;
  const found = await storage.tokens.findRefreshForRotation(ref);
  assert.equal(found?.record.id, TOKEN_ID);
  assert.equal(found?.userActive, true);
  assert.equal(
    (await storage.tokens.rotateRefresh(ref, replacement(Date.now()), Date.now(), NO_AUDIT)).outcome,
    "rotated",
  );
  assert.ok((await storage.tokens.findRefresh(ref))?.usedAt);
  // Spent: presenting it again revokes the family, as before the migration.
  assert.equal(
    (await storage.tokens.rotateRefresh(ref, replacement(Date.now()), Date.now(), NO_AUDIT)).outcome,
    "reused",
  );
  assert.equal(await storage.tokens.isFamilyRevoked("fam_legacy"), true);
  // Once the family has expired, housekeeping takes the token and its legacy digest.
  await new Housekeeper({ storage, clock: () => NOW + 7_200_000 }).runOnce();
  assert.equal(await storage.tokens.findRefresh(ref), null);
}

const NO_AUDIT = { rotated: null, reused: null };
const selected = new Set(backends().map((backend) => backend.name));

describe("migration 5: refresh tokens from before it keep working", () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const cleanup of cleanups) await cleanup();
  });

  test("SQLite", { skip: !selected.has("sqlite") }, async () => {
    const dir = tempDir();
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "gatehouse.db");
    // A store as version 4 left it, with a user and one refresh token.
    const old = new DatabaseSync(path);
    old.exec(
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
    );
    for (const migration of SQLITE_MIGRATIONS.filter((m) => m.version <= 4)) {
      old.exec(migration.sql);
      old.prepare("INSERT INTO schema_migrations VALUES (?, ?, ?)").run(migration.version, migration.name, NOW);
    }
    old
      .prepare(
        "INSERT INTO users (id, email, password_hash, scopes, status, created_at, updated_at, password_changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(...USER_ROW, NOW, NOW, NOW);
    old
      .prepare(
        "INSERT INTO refresh_tokens (digest, id, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      )
      .run(...TOKEN_ROW);
    old.close();

    const storage = SqliteStorage.open(path);
    cleanups.unshift(() => storage.close());
    const version = storage.database.db.prepare("SELECT max(version) AS v FROM schema_migrations").get();
    // Migration 5 and every later one applied.
    assert.ok(Number(version?.v) >= 5);
    await legacyTokenStillWorks(storage);
  });

  test("PostgreSQL", { skip: !selected.has("postgres") }, async () => {
    const schema = `gh_test_${randomBytes(6).toString("hex")}`;
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    cleanups.push(async () => {
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    });
    await client.query(`CREATE SCHEMA ${schema}`);
    await client.query(`SET search_path = ${schema}`);
    await client.query(
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    );
    for (const migration of POSTGRES_MIGRATIONS.filter((m) => m.version <= 4)) {
      await client.query(migration.sql);
      await client.query("INSERT INTO schema_migrations VALUES ($1, $2, $3)", [migration.version, migration.name, NOW]);
    }
    await client.query(
      "INSERT INTO users (id, email, password_hash, scopes, status, created_at, updated_at, password_changed_at) VALUES ($1, $2, $3, $4, $5, $6, $6, $6)",
      [...USER_ROW, NOW],
    );
    await client.query(
      "INSERT INTO refresh_tokens (digest, id, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
      TOKEN_ROW,
    );

    const storage = await PostgresStorage.open(TEST_DATABASE_URL, { schema, poolSize: 2 });
    cleanups.unshift(() => storage.close());
    const { rows } = await client.query("SELECT max(version) AS v FROM schema_migrations");
    assert.ok(Number(rows[0].v) >= 5);
    await legacyTokenStillWorks(storage);
  });
});
