import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

// Requirements of issue 2 that no other test pinned: the RateLimit headers "where Gatehouse
// guards its own routes", verification that rejects a mistyped key "without touching
// storage", the key "stored only as a SHA-256 digest", and keys without expiry when policy
// allows none.

const RATE_LIMIT = /^"key";r=(\d+);t=(\d+)$/;

for (const backend of backends()) {
  describe(`API keys, issue 2 conformance (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend);
    });
    after(() => server.close());

    test("Gatehouse's own routes send RateLimit-Policy and RateLimit; past the caller's limit, 429 with Retry-After", async () => {
      const reader = await server.call("POST", "/v1/keys", {
        name: "limited reader",
        scopes: [],
        permissions: ["keys:read"],
        rateLimit: { limit: 2, windowSeconds: 60 },
      });
      assert.equal(reader.status, 201);
      const remaining = [];
      for (let i = 0; i < 2; i++) {
        const ok = await server.call("GET", "/v1/keys?limit=1", undefined, { key: reader.body.key });
        assert.equal(ok.status, 200);
        assert.equal(ok.headers.get("ratelimit-policy"), '"key";q=2;w=60');
        const match = RATE_LIMIT.exec(ok.headers.get("ratelimit") ?? "");
        assert.ok(match, ok.headers.get("ratelimit") ?? "no RateLimit header");
        remaining.push(Number(match[1]));
        assert.ok(Number(match[2]) <= 60);
      }
      assert.deepEqual(remaining, [1, 0]);

      const refused = await server.call("GET", "/v1/keys?limit=1", undefined, { key: reader.body.key });
      assert.equal(refused.status, 429);
      assert.match(refused.headers.get("content-type") ?? "", /^application\/problem\+json/);
      assert.equal(refused.body.code, "RATE_LIMITED");
      assert.equal(refused.body.limitedBy, "key");
      assert.equal(refused.headers.get("ratelimit-policy"), '"key";q=2;w=60');
      const limit = RATE_LIMIT.exec(refused.headers.get("ratelimit") ?? "");
      assert.equal(limit?.[1], "0");
      const retryAfter = Number(refused.headers.get("retry-after"));
      assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, String(retryAfter));
      assert.equal(refused.body.data, undefined, "the refused request was not served");
    });

    test("a key without a limit of its own is held to the default (1000 per 60 s) on Gatehouse's routes", async () => {
      const reader = await server.call("POST", "/v1/keys", { name: "reader", scopes: [], permissions: ["keys:read"] });
      assert.equal(reader.body.rateLimit, null);
      const ok = await server.call("GET", `/v1/keys/${reader.body.id}`, undefined, { key: reader.body.key });
      assert.equal(ok.status, 200);
      assert.equal(ok.headers.get("ratelimit-policy"), '"key";q=1000;w=60');
      assert.equal(RATE_LIMIT.exec(ok.headers.get("ratelimit") ?? "")?.[1], "999");
    });

    test("a key is stored as its SHA-256 digest alone: no table holds the key itself", async () => {
      const created = await server.call("POST", "/v1/keys", { name: "stored", scopes: [] });
      const key: string = created.body.key;
      await server.call("POST", "/v1/keys/verify", { key });
      await server.gatehouse.usage.flush();
      await server.gatehouse.audit.flush();
      const record = await server.gatehouse.storage.keys.findById(created.body.id);
      assert.deepEqual(record?.digest, createHash("sha256").update(key).digest());
      const secret = key.slice(5, 48);
      const storage = server.gatehouse.storage;
      if (storage instanceof SqliteStorage) {
        // Every row of every table, blobs as text and as hex: the key is in none of them.
        const tables = storage.database
          .statement("SELECT name FROM sqlite_master WHERE type = 'table'")
          .all() as Array<{ name: string }>;
        assert.ok(tables.some((table) => table.name === "api_keys"));
        const hex = Buffer.from(secret).toString("hex");
        for (const { name } of tables) {
          const rows = storage.database.statement(`SELECT * FROM "${name}"`).all() as Array<Record<string, unknown>>;
          for (const row of rows) {
            for (const value of Object.values(row)) {
              const text: string =
                value instanceof Uint8Array
                  ? `${Buffer.from(value).toString()} ${Buffer.from(value).toString("hex")}`
                  : String(value);
              assert.ok(!text.includes(secret) && !text.includes(hex), `table ${name} holds the key`);
            }
          }
        }
      } else {
        assert.ok(storage instanceof PostgresStorage);
        const database: PostgresStorage["database"] = storage.database;
        // Every row of every table of the store's schema, as PostgreSQL's own text of it
        // (bytea as hex): the key is in none of them.
        const hex = Buffer.from(secret).toString("hex");
        const { rows: tables } = await database.query<{ name: string }>(
          "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = current_schema()",
        );
        assert.ok(tables.some((table) => table.name === "api_keys"));
        for (const { name } of tables) {
          const dump = await database.query<{ line: string }>(`SELECT t::text AS line FROM "${name}" t`);
          for (const { line } of dump.rows) {
            assert.ok(!line.includes(secret) && !line.includes(hex), `table ${name} holds the key`);
          }
        }
      }
    });

    test("a mistyped or forged key is refused without a storage lookup; a well-formed unknown one is looked up", async () => {
      const created = await server.call("POST", "/v1/keys", { name: "typo", scopes: [] });
      const key: string = created.body.key;
      const keys = server.gatehouse.storage.keys;
      const original = keys.findByDigest;
      let lookups = 0;
      // Counts and passes through: the real repository answers every lookup.
      keys.findByDigest = (digest) => {
        lookups++;
        return original.call(keys, digest);
      };
      try {
        const typo = key.slice(0, 10) + (key[10] === "a" ? "b" : "a") + key.slice(11);
        for (const bad of [typo, `${key.slice(0, -6)}AAAAAA`, key.replace("gate_", "gatf_")]) {
          const r = await server.call("POST", "/v1/keys/verify", { key: bad });
          assert.deepEqual(r.body, { valid: false, code: "MALFORMED" }, bad);
        }
        assert.equal(lookups, 0, "MALFORMED is decided from the key alone");
        const unknown = await server.call("POST", "/v1/keys/verify", { key: generateKey("gate") });
        assert.deepEqual(unknown.body, { valid: false, code: "NOT_FOUND" });
        assert.ok(lookups >= 1, "the spy sees lookups, so the zero above means something");
      } finally {
        keys.findByDigest = original;
      }
    });
  });

  describe(`keys without expiry, when policy allows them (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend, { env: { GATEHOUSE_KEY_ALLOW_NO_EXPIRY: "true" } });
    });
    after(() => server.close());

    test("expiresInSeconds: null makes a key that never expires; omitted, the maximum lifetime still applies", async () => {
      const never = await server.call("POST", "/v1/keys", { name: "forever", scopes: ["a"], expiresInSeconds: null });
      assert.equal(never.status, 201, JSON.stringify(never.body));
      assert.equal(never.body.expiresAt, null);
      const verified = await server.call("POST", "/v1/keys/verify", { key: never.body.key });
      assert.equal(verified.body.valid, true);
      assert.equal(verified.body.expiresAt, null);
      const defaulted = await server.call("POST", "/v1/keys", { name: "default", scopes: [] });
      const lifetime = Date.parse(defaulted.body.expiresAt) - Date.parse(defaulted.body.createdAt);
      assert.equal(lifetime, 90 * 86400 * 1000);
    });
  });
}
