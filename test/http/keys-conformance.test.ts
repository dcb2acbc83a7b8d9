import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

// Requirements of issue 2 that no other test pinned: the RateLimit headers "where Gatehouse
// guards its own routes", verification that rejects a mistyped key "without touching
// storage", and keys without expiry when policy allows none.

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
