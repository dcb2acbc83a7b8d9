import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

for (const backend of backends()) {
  describe(`API key lifecycle over HTTP (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend);
    });
    after(() => server.close());

    const verify = (key: string, scopes?: string[]) =>
      server.call("POST", "/v1/keys/verify", { key, ...(scopes ? { scopes } : {}) });

    test("create returns the key once; reads never show it or its digest", async () => {
      const created = await server.call("POST", "/v1/keys", {
        name: "billing",
        scopes: ["payments:read"],
        ownerId: "acct_1",
      });
      assert.equal(created.status, 201);
      assert.match(created.body.key, /^gate_[0-9A-Za-z]{49}$/);
      assert.equal(created.headers.get("location"), `/v1/keys/${created.body.id}`);
      assert.equal(created.headers.get("cache-control"), "no-store");
      const read = await server.call("GET", `/v1/keys/${created.body.id}`);
      assert.equal(read.status, 200);
      assert.equal(read.body.key, undefined);
      assert.equal(read.body.digest, undefined);
      assert.ok(!JSON.stringify(read.body).includes(created.body.key.slice(10, 30)));
      assert.equal(read.body.hint, `${created.body.key.slice(0, 9)}…${created.body.key.slice(-4)}`);
      assert.equal(read.body.status, "active");
      assert.equal(read.body.ownerId, "acct_1");
    });

    test("verify: valid with scopes, INSUFFICIENT_SCOPE without", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "s", scopes: ["payments:read"] });
      const ok = await verify(body.key, ["payments:read"]);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.valid, true);
      assert.equal(ok.body.keyId, body.id);
      assert.deepEqual(ok.body.scopes, ["payments:read"]);
      assert.equal(ok.body.ratelimit.limit, 1000);
      assert.equal(ok.body.ratelimit.remaining, 999);
      const denied = await verify(body.key, ["payments:write"]);
      assert.deepEqual(
        { valid: denied.body.valid, code: denied.body.code },
        { valid: false, code: "INSUFFICIENT_SCOPE" },
      );
    });

    test("verify: MALFORMED for wrong shape or checksum, NOT_FOUND for a well-formed unknown key", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "m", scopes: [] });
      const key: string = body.key;
      const flipped = key.slice(0, 20) + (key[20] === "a" ? "b" : "a") + key.slice(21);
      for (const bad of [
        "",
        "gate_",
        "nope",
        key.slice(0, -1),
        `${key}x`,
        flipped,
        key.replace("gate_", "gat3_"),
        `${key.slice(0, -6)}!!!!!!`,
      ]) {
        const r = await verify(bad);
        assert.equal(r.status, 200, bad);
        assert.deepEqual(r.body, { valid: false, code: "MALFORMED" }, bad);
      }
      const { generateKey } = await import("../../src/keys/key-format.ts");
      assert.deepEqual((await verify(generateKey("gate"))).body, { valid: false, code: "NOT_FOUND" });
    });

    test("per-key rate limit: exactly N valid answers per window, then RATE_LIMITED with reset", async () => {
      const { body } = await server.call("POST", "/v1/keys", {
        name: "r",
        scopes: [],
        rateLimit: { limit: 3, windowSeconds: 60 },
      });
      const answers = [];
      for (let i = 0; i < 5; i++) answers.push((await verify(body.key)).body);
      assert.deepEqual(
        answers.map((a) => a.valid),
        [true, true, true, false, false],
      );
      assert.deepEqual(
        answers.map((a) => a.ratelimit.remaining),
        [2, 1, 0, 0, 0],
      );
      assert.equal(answers[3].code, "RATE_LIMITED");
      assert.ok(answers[3].ratelimit.reset > Date.now());
    });

    test("revocation takes effect on the next request", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "v", scopes: [] });
      assert.equal((await verify(body.key)).body.valid, true);
      const revoked = await server.call("POST", `/v1/keys/${body.id}/revoke`, { reason: "test" });
      assert.equal(revoked.status, 200);
      assert.equal(revoked.body.status, "revoked");
      assert.deepEqual((await verify(body.key)).body, { valid: false, code: "REVOKED" });
      // Idempotent: revoking again changes nothing.
      const again = await server.call("POST", `/v1/keys/${body.id}/revoke`);
      assert.equal(again.body.revokedAt, revoked.body.revokedAt);
    });

    test("a revoke body that is not {reason} is refused with 400 and revokes nothing", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "rb", scopes: [] });
      for (const bad of [{ reason: "" }, { reason: "x".repeat(201) }, { reason: 7 }, { reason: "ok", extra: 1 }]) {
        const refused = await server.call("POST", `/v1/keys/${body.id}/revoke`, bad);
        assert.equal(refused.status, 400, JSON.stringify(bad));
        assert.equal(refused.body.code, "VALIDATION_FAILED");
      }
      assert.equal((await verify(body.key)).body.valid, true);
      const revoked = await server.call("POST", `/v1/keys/${body.id}/revoke`, { reason: "x".repeat(200) });
      assert.equal(revoked.status, 200);
      assert.equal(revoked.body.revokedReason, "x".repeat(200));
    });

    test("rotation with grace: both keys work, then only the new one", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "rot", scopes: ["a"] });
      const rotated = await server.call("POST", `/v1/keys/${body.id}/rotate`, { gracePeriodSeconds: 3600 });
      assert.equal(rotated.status, 201);
      assert.notEqual(rotated.body.key, body.key);
      assert.equal(rotated.body.rotatedFrom, body.id);
      assert.deepEqual(rotated.body.scopes, ["a"]);
      assert.equal((await verify(body.key)).body.valid, true);
      assert.equal((await verify(rotated.body.key)).body.valid, true);
      const old = await server.call("GET", `/v1/keys/${body.id}`);
      assert.equal(old.body.replacedBy, rotated.body.id);
      assert.ok(Date.parse(old.body.expiresAt) <= Date.now() + 3600_000);
      // A key is rotated once; a second rotation of the old one is a conflict.
      const twice = await server.call("POST", `/v1/keys/${body.id}/rotate`, { gracePeriodSeconds: 0 });
      assert.equal(twice.status, 409);
      assert.equal(twice.body.code, "CONFLICT");
    });

    test("rotation with grace 0 stops the old key at once", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "rot0", scopes: [] });
      const rotated = await server.call("POST", `/v1/keys/${body.id}/rotate`, { gracePeriodSeconds: 0 });
      assert.deepEqual((await verify(body.key)).body, { valid: false, code: "REVOKED" });
      assert.equal((await verify(rotated.body.key)).body.valid, true);
    });

    test("patch changes scopes and the next verification sees them", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "p", scopes: ["a"] });
      const patched = await server.call("PATCH", `/v1/keys/${body.id}`, {
        scopes: ["a", "b"],
        name: "p2",
        metadata: { team: "x" },
      });
      assert.equal(patched.status, 200);
      assert.equal(patched.body.name, "p2");
      assert.deepEqual(patched.body.metadata, { team: "x" });
      assert.equal((await verify(body.key, ["b"])).body.valid, true);
      const empty = await server.call("PATCH", `/v1/keys/${body.id}`, {});
      assert.equal(empty.status, 400);
    });

    test("list is paginated newest first with a cursor", async () => {
      for (let i = 0; i < 3; i++)
        await server.call("POST", "/v1/keys", { name: `page${i}`, scopes: [], ownerId: "pager" });
      const first = await server.call("GET", "/v1/keys?ownerId=pager&limit=2");
      assert.equal(first.status, 200);
      assert.deepEqual(
        first.body.data.map((k: { name: string }) => k.name),
        ["page2", "page1"],
      );
      assert.ok(first.body.nextCursor);
      const second = await server.call("GET", `/v1/keys?ownerId=pager&limit=2&cursor=${first.body.nextCursor}`);
      assert.deepEqual(
        second.body.data.map((k: { name: string }) => k.name),
        ["page0"],
      );
      assert.equal(second.body.nextCursor, null);
      for (const key of [...first.body.data, ...second.body.data]) assert.equal(key.key, undefined);
    });

    test("expiry: a key created with the maximum lifetime refuses more", async () => {
      const tooLong = await server.call("POST", "/v1/keys", { name: "x", scopes: [], expiresInSeconds: 91 * 86400 });
      assert.equal(tooLong.status, 400);
      assert.equal(tooLong.body.code, "VALIDATION_FAILED");
      const never = await server.call("POST", "/v1/keys", { name: "x", scopes: [], expiresInSeconds: null });
      assert.equal(never.status, 400);
      const defaulted = await server.call("POST", "/v1/keys", { name: "x", scopes: [] });
      const lifetime = Date.parse(defaulted.body.expiresAt) - Date.parse(defaulted.body.createdAt);
      assert.equal(lifetime, 90 * 86400 * 1000);
    });

    test("a key that calls Gatehouse's own API is counted too: its uses, refusals and last use", async () => {
      const service = await server.call("POST", "/v1/keys", { name: "svc", scopes: [], permissions: ["keys:verify"] });
      assert.equal(service.status, 201);
      const { body: customer } = await server.call("POST", "/v1/keys", { name: "customer", scopes: ["a"] });
      for (let i = 0; i < 3; i++) {
        const r = await server.call("POST", "/v1/keys/verify", { key: customer.key }, { key: service.body.key });
        assert.equal(r.body.valid, true);
      }
      assert.equal((await server.call("POST", `/v1/keys/${service.body.id}/revoke`, {})).status, 200);
      const refused = await server.call("POST", "/v1/keys/verify", { key: customer.key }, { key: service.body.key });
      assert.equal(refused.status, 401);
      const usage = await server.call("GET", `/v1/keys/${service.body.id}/usage?interval=day`);
      const totals: Record<string, number> = {};
      for (const bucket of usage.body.buckets)
        for (const [k, v] of Object.entries(bucket.counts)) totals[k] = (totals[k] ?? 0) + (v as number);
      assert.deepEqual(totals, { VALID: 3, REVOKED: 1 });
      const key = await server.call("GET", `/v1/keys/${service.body.id}`);
      assert.ok(Date.parse(key.body.lastUsedAt) > 0, "an admin or service key in use does not look unused");
    });

    test("usage is counted per outcome and last use is kept", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "u", scopes: ["a"] });
      await verify(body.key, ["a"]);
      await verify(body.key, ["a"]);
      await verify(body.key, ["b"]);
      const usage = await server.call("GET", `/v1/keys/${body.id}/usage?interval=day`);
      assert.equal(usage.status, 200);
      const totals: Record<string, number> = {};
      for (const bucket of usage.body.buckets)
        for (const [k, v] of Object.entries(bucket.counts)) totals[k] = (totals[k] ?? 0) + (v as number);
      assert.deepEqual(totals, { VALID: 2, INSUFFICIENT_SCOPE: 1 });
      assert.ok(usage.body.lastUsedAt === null || Date.parse(usage.body.lastUsedAt) > 0);
      const key = await server.call("GET", `/v1/keys/${body.id}`);
      assert.ok(Date.parse(key.body.lastUsedAt) > 0);
    });

    test("usage older than a week is answered per hour; asking it per minute says why not", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "old usage", scopes: [] });
      const day = 86_400_000;
      const now = Date.now();
      const hour = now - 10 * day - ((now - 10 * day) % 3_600_000);
      await server.gatehouse.storage.usage.add([
        { keyId: body.id, bucket: hour + 60_000, outcome: "VALID", count: 2, lastAt: hour + 60_001 },
        { keyId: body.id, bucket: hour + 120_000, outcome: "VALID", count: 3, lastAt: hour + 120_001 },
      ]);
      const result = await server.gatehouse.housekeeper.runOnce();
      assert.ok(result.usageRolledUp >= 2);
      const since = new Date(hour - 3_600_000).toISOString();
      const until = new Date(hour + 2 * 3_600_000).toISOString();
      const hourly = await server.call("GET", `/v1/keys/${body.id}/usage?interval=hour&since=${since}&until=${until}`);
      assert.equal(hourly.status, 200);
      assert.deepEqual(hourly.body.buckets, [{ start: new Date(hour).toISOString(), total: 5, counts: { VALID: 5 } }]);
      const minutes = await server.call(
        "GET",
        `/v1/keys/${body.id}/usage?interval=minute&since=${since}&until=${until}`,
      );
      assert.equal(minutes.status, 400);
      assert.match(minutes.body.detail, /kept per minute for 7 days \(GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS\)/);
      // The minute retention starts at a whole minute: minutes from there on are answered.
      const horizon = Date.now() - 7 * day;
      const firstMinute = horizon - (horizon % 60_000) + 60_000;
      const range = (from: number) =>
        `since=${new Date(from).toISOString()}&until=${new Date(from + 3_600_000).toISOString()}`;
      const inside = await server.call("GET", `/v1/keys/${body.id}/usage?interval=minute&${range(firstMinute)}`);
      assert.equal(inside.status, 200);
      const outside = await server.call(
        "GET",
        `/v1/keys/${body.id}/usage?interval=minute&${range(firstMinute - 2 * 60_000)}`,
      );
      assert.equal(outside.status, 400);
      // Minutes rolled up sooner than the retention says (it was lowered, then raised) are
      // left out of a minute answer rather than put on one minute.
      const recent = now - 2 * day - ((now - 2 * day) % 3_600_000);
      await server.gatehouse.storage.usage.add([
        { keyId: body.id, bucket: recent + 300_000, outcome: "VALID", count: 4 },
      ]);
      while ((await server.gatehouse.storage.usage.rollUp(now - day, 1000)) === 1000) {}
      const since2 = new Date(recent).toISOString();
      const until2 = new Date(recent + 3_600_000).toISOString();
      const perMinute = await server.call(
        "GET",
        `/v1/keys/${body.id}/usage?interval=minute&since=${since2}&until=${until2}`,
      );
      assert.deepEqual(perMinute.body.buckets, []);
      const perHour = await server.call(
        "GET",
        `/v1/keys/${body.id}/usage?interval=hour&since=${since2}&until=${until2}`,
      );
      assert.deepEqual(perHour.body.buckets, [{ start: since2, total: 4, counts: { VALID: 4 } }]);
      // The last use survives the roll-up.
      assert.equal(
        (await server.call("GET", `/v1/keys/${body.id}`)).body.lastUsedAt,
        new Date(hour + 120_001).toISOString(),
      );
    });

    test("audit log records admin actions and failed verifications, never secrets", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "aud", scopes: [] });
      await server.call("POST", `/v1/keys/${body.id}/revoke`);
      await verify(body.key);
      const events = await server.call("GET", `/v1/audit?targetId=${body.id}`);
      assert.equal(events.status, 200);
      const actions = events.body.data.map((e: { action: string; outcome: string }) => `${e.action}:${e.outcome}`);
      assert.deepEqual(actions, ["key.verify:failure", "key.revoke:success", "key.create:success"]);
      assert.ok(!JSON.stringify(events.body).includes(body.key));
      assert.ok(!JSON.stringify(events.body).includes(body.key.slice(9, 40)));
      const failures = await server.call("GET", "/v1/audit?outcome=failure&action=key.verify&limit=1");
      assert.equal(failures.body.data.length, 1);
      assert.equal(failures.body.data[0].ip, "127.0.0.1");
    });

    // Regression: a PATCH was audited as {fields: [<the names sent>]} alone, so the log could
    // not say which permissions a key was given or lost (key.create records them), and named
    // fields that were sent with the values they had as changed.
    test("a change is audited with the fields it changed and the permissions, scopes and limit before and after", async () => {
      const { body } = await server.call("POST", "/v1/keys", {
        name: "grant",
        scopes: ["a"],
        permissions: ["keys:read"],
      });
      const patched = await server.call("PATCH", `/v1/keys/${body.id}`, {
        name: "grant",
        scopes: ["a", "b"],
        permissions: ["keys:read", "keys:write"],
        rateLimit: { limit: 5, windowSeconds: 60 },
      });
      assert.equal(patched.status, 200, JSON.stringify(patched.body));
      const same = await server.call("PATCH", `/v1/keys/${body.id}`, { permissions: ["keys:read", "keys:write"] });
      assert.equal(same.status, 200);
      const events = await server.call("GET", `/v1/audit?targetId=${body.id}&action=key.update`);
      assert.deepEqual(
        events.body.data.map((e: { detail: unknown }) => e.detail),
        [
          { fields: [], permissions: { before: ["keys:read", "keys:write"], after: ["keys:read", "keys:write"] } },
          {
            fields: ["scopes", "permissions", "rateLimit"],
            scopes: { before: ["a"], after: ["a", "b"] },
            permissions: { before: ["keys:read"], after: ["keys:read", "keys:write"] },
            rateLimit: { before: null, after: { limit: 5, windowSeconds: 60 } },
          },
        ],
      );
    });
  });
}

for (const backend of backends()) {
  describe(`usage still in memory (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      // No timed flush during the test: what the reads show, they wrote themselves.
      server = await startServer(backend, { env: { GATEHOUSE_USAGE_FLUSH_MS: "60000" } });
    });
    after(() => server.close());

    test("key reads and the usage endpoint include uses not yet flushed", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "fresh use", scopes: [] });
      const unused = await server.call("GET", `/v1/keys/${body.id}`);
      assert.equal(unused.body.lastUsedAt, null);
      assert.equal((await server.call("POST", "/v1/keys/verify", { key: body.key })).body.valid, true);
      const one = await server.call("GET", `/v1/keys/${body.id}`);
      assert.ok(Date.parse(one.body.lastUsedAt) > 0, "GET /v1/keys/{id} shows the use");
      assert.equal((await server.call("POST", "/v1/keys/verify", { key: body.key })).body.valid, true);
      const listed = await server.call("GET", "/v1/keys?limit=100");
      const row = listed.body.data.find((key: { id: string }) => key.id === body.id);
      assert.ok(Date.parse(row.lastUsedAt) >= Date.parse(one.body.lastUsedAt), "GET /v1/keys shows it");
      // Shown from memory, not written early: a caller polling key reads does not make
      // the node write its usage more often.
      assert.equal((await server.gatehouse.storage.keys.findById(body.id))?.lastUsedAt, null);
      const usage = await server.call("GET", `/v1/keys/${body.id}/usage?interval=day`);
      const valid = usage.body.buckets.reduce(
        (n: number, b: { counts: { VALID?: number } }) => n + (b.counts.VALID ?? 0),
        0,
      );
      assert.equal(valid, 2);
      assert.ok(Date.parse(usage.body.lastUsedAt) > 0, "the usage answer's lastUsedAt is as current as its counts");
      assert.deepEqual(
        await server.gatehouse.storage.usage.read(body.id, 0, Date.now() + 60_000),
        [],
        "the usage endpoint answered from memory and wrote nothing",
      );
      await server.gatehouse.usage.flush();
      const written = await server.call("GET", `/v1/keys/${body.id}/usage?interval=day`);
      assert.deepEqual(written.body.buckets, usage.body.buckets, "once written, the same answer, counted once");
    });
  });
}
