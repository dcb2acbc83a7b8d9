import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { newId } from "../../src/lib/ids.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { ApiKeyRecord, AuditEventInput, AuditQuery, IndexedKey, Storage } from "../../src/storage/types.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

const NOW = Date.UTC(2026, 0, 1);

function record(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return keyRecord(NOW, {
    scopes: ["a:read"],
    metadata: { team: "x", nested: { n: 1 } },
    rateLimit: { limit: 10, windowSeconds: 60 },
    expiresAt: NOW + 86_400_000,
    ...overrides,
  });
}

function event(action: string, targetId: string | null = null): AuditEventInput {
  return {
    at: NOW,
    actor: "cli",
    action,
    targetType: "key",
    targetId,
    outcome: "success",
    ip: "127.0.0.1",
    userAgent: null,
    requestId: null,
    detail: { n: 1 },
  };
}

for (const backend of backends()) {
  describe(`storage contract (${backend.name})`, () => {
    let store: TestStore;
    let storage: Storage;
    before(async () => {
      store = await backend.create();
      storage = store.storage;
    });
    after(() => store.dispose());

    test("a key round-trips exactly, by digest and by id", async () => {
      const original = record({
        ownerId: "acct",
        permissions: ["keys:read"],
        allowedAddresses: ["::ffff:0:0/96", "198.51.100.7"],
      });
      await storage.keys.insert(original, event("key.create", original.id));
      assert.deepEqual(await storage.keys.findByDigest(original.digest), original);
      assert.deepEqual(await storage.keys.findById(original.id), original);
      assert.equal(await storage.keys.findByDigest(randomBytes(32)), null);
      assert.equal(await storage.keys.findById("key_nope"), null);
    });

    test("a failing insert writes neither the key nor its audit event", async () => {
      const first = record();
      await storage.keys.insert(first, null);
      const duplicate = record({ digest: first.digest, id: newId("key", NOW) });
      await assert.rejects(storage.keys.insert(duplicate, event("key.create", duplicate.id)));
      assert.equal(await storage.keys.findById(duplicate.id), null);
      assert.deepEqual(await storage.audit.query({ targetId: duplicate.id, limit: 10 }), []);
    });

    test("concurrent rotations of one key: exactly one wins", async () => {
      const old = record();
      await storage.keys.insert(old, null);
      const replacements = Array.from({ length: 8 }, () => record({ rotatedFrom: old.id }));
      const results = await Promise.all(
        replacements.map((r) =>
          storage.keys.rotate(
            old.id,
            r,
            { at: NOW + 1, oldExpiresAt: NOW + 1000, revokeOld: false },
            event("key.rotate", old.id),
          ),
        ),
      );
      assert.equal(results.filter(Boolean).length, 1);
      const winner = replacements[results.indexOf(true)];
      const after = await storage.keys.findById(old.id);
      assert.equal(after?.replacedBy, winner?.id);
      assert.equal(after?.expiresAt, NOW + 1000);
      const losers = replacements.filter((_, i) => !results[i]);
      for (const loser of losers) assert.equal(await storage.keys.findById(loser.id), null);
      assert.equal((await storage.audit.query({ targetId: old.id, action: "key.rotate", limit: 10 })).length, 1);
    });

    test("rotation never extends an expiry and refuses revoked or expired keys", async () => {
      const short = record({ expiresAt: NOW + 500 });
      await storage.keys.insert(short, null);
      assert.equal(
        await storage.keys.rotate(short.id, record(), { at: NOW, oldExpiresAt: NOW + 10_000, revokeOld: false }, null),
        true,
      );
      assert.equal((await storage.keys.findById(short.id))?.expiresAt, NOW + 500);
      const expired = record({ expiresAt: NOW - 1 });
      await storage.keys.insert(expired, null);
      assert.equal(
        await storage.keys.rotate(expired.id, record(), { at: NOW, oldExpiresAt: NOW, revokeOld: true }, null),
        false,
      );
      const revoked = record({ revokedAt: NOW - 1, revokedReason: "x" });
      await storage.keys.insert(revoked, null);
      assert.equal(
        await storage.keys.rotate(revoked.id, record(), { at: NOW, oldExpiresAt: NOW, revokeOld: true }, null),
        false,
      );
    });

    test("revoke is idempotent and keeps the first revocation time", async () => {
      const k = record();
      await storage.keys.insert(k, null);
      const first = await storage.keys.revoke(k.id, NOW + 5, "one", event("key.revoke", k.id));
      const second = await storage.keys.revoke(k.id, NOW + 9, "two", event("key.revoke", k.id));
      assert.equal((await storage.audit.query({ targetId: k.id, action: "key.revoke", limit: 10 })).length, 1);
      assert.equal(first?.revokedAt, NOW + 5);
      assert.equal(second?.revokedAt, NOW + 5);
      assert.equal(second?.revokedReason, "one");
      assert.equal(await storage.keys.revoke("key_missing", NOW, "x", null), null);
    });

    test("update changes only the given fields; null clears", async () => {
      const k = record({ ownerId: "o" });
      await storage.keys.insert(k, null);
      const updated = await storage.keys.update(
        k.id,
        { name: "renamed", metadata: null, rateLimit: null },
        event("key.update", k.id),
      );
      assert.equal(updated?.name, "renamed");
      assert.equal(updated?.metadata, null);
      assert.equal(updated?.rateLimit, null);
      assert.equal(updated?.ownerId, "o");
      assert.deepEqual(updated?.scopes, k.scopes);
      assert.equal(await storage.keys.update("key_missing", { name: "x" }, null), null);
      const bound = await storage.keys.update(k.id, { allowedAddresses: ["203.0.113.0/24"] }, null);
      assert.deepEqual(bound?.allowedAddresses, ["203.0.113.0/24"]);
      assert.equal(bound?.name, "renamed");
      assert.equal((await storage.keys.update(k.id, { allowedAddresses: null }, null))?.allowedAddresses, null);
    });

    test("usage adds up across batches; the last use is the latest valid one, and survives purging", async () => {
      const k = record();
      await storage.keys.insert(k, null);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, null);
      await storage.usage.add([
        { keyId: k.id, bucket: NOW, outcome: "VALID", count: 2, lastAt: NOW + 10 },
        { keyId: k.id, bucket: NOW, outcome: "RATE_LIMITED", count: 1, lastAt: null },
      ]);
      await storage.usage.add([{ keyId: k.id, bucket: NOW, outcome: "VALID", count: 3, lastAt: NOW + 5 }]);
      assert.deepEqual(await storage.usage.read(k.id, NOW, NOW + 60_000), [
        { bucket: NOW, outcome: "RATE_LIMITED", count: 1 },
        { bucket: NOW, outcome: "VALID", count: 5 },
      ]);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, NOW + 10);
      await storage.usage.add([
        { keyId: k.id, bucket: NOW + 60_000, outcome: "VALID", count: 1, lastAt: NOW + 61_000 },
      ]);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, NOW + 61_000);
      const listed = await storage.keys.list({ limit: 1000 });
      assert.equal(listed.find((row) => row.id === k.id)?.lastUsedAt, NOW + 61_000);
      // Purging the usage log keeps the last use on the key itself.
      while ((await storage.housekeeping.purge("usage", NOW + 120_000, 1000)) > 0) {}
      assert.deepEqual(await storage.usage.read(k.id, NOW, NOW + 120_000), []);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, NOW + 61_000);
    });

    test("old minutes of usage roll up into their hours, in batches, without losing a count or the last use", async () => {
      const k = record();
      await storage.keys.insert(k, null);
      const hour = NOW - (NOW % 3_600_000);
      const minute = 60_000;
      await storage.usage.add([
        { keyId: k.id, bucket: hour, outcome: "VALID", count: 2, lastAt: hour + 1 },
        { keyId: k.id, bucket: hour + 5 * minute, outcome: "VALID", count: 3, lastAt: hour + 5 * minute + 7 },
        { keyId: k.id, bucket: hour + 59 * minute, outcome: "EXPIRED", count: 1, lastAt: null },
        { keyId: k.id, bucket: hour + 59 * minute, outcome: "VALID", count: 4, lastAt: hour + 59 * minute + 2 },
        // The next hour: one minute before the cutoff, one at it (kept per minute).
        { keyId: k.id, bucket: hour + 60 * minute, outcome: "VALID", count: 5, lastAt: hour + 60 * minute + 3 },
        { keyId: k.id, bucket: hour + 61 * minute, outcome: "VALID", count: 6, lastAt: hour + 61 * minute + 9 },
      ]);
      const cutoff = hour + 61 * minute;
      // Batches of two: one hour's rows arrive in two batches and are added up.
      let moved = 0;
      for (;;) {
        const n = await storage.usage.rollUp(cutoff, 2);
        moved += n;
        if (n < 2) break;
      }
      assert.equal(moved, 5);
      assert.deepEqual(await storage.usage.read(k.id, hour, hour + 120 * minute), [
        { bucket: hour, outcome: "EXPIRED", count: 1 },
        { bucket: hour, outcome: "VALID", count: 9 },
        { bucket: hour + 60 * minute, outcome: "VALID", count: 5 },
        { bucket: hour + 61 * minute, outcome: "VALID", count: 6 },
      ]);
      assert.equal(await storage.usage.rollUp(cutoff, 2), 0, "nothing left before the cutoff");
      // Rolling up the newest minute too leaves the last use on the key.
      assert.equal(await storage.usage.rollUp(hour + 120 * minute, 100), 1);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, hour + 61 * minute + 9);
      assert.deepEqual(await storage.usage.read(k.id, hour + 60 * minute, hour + 120 * minute), [
        { bucket: hour + 60 * minute, outcome: "VALID", count: 11 },
      ]);
      // Hours are purged like minutes.
      while ((await storage.housekeeping.purge("usage_hours", hour + 120 * minute, 1)) > 0) {}
      assert.deepEqual(await storage.usage.read(k.id, hour, hour + 120 * minute), []);
      assert.equal((await storage.keys.findById(k.id))?.lastUsedAt, hour + 61 * minute + 9);
    });

    test("audit events are append-only and filterable, newest first", async () => {
      await storage.audit.append([event("x.one", "t1"), event("x.two", "t1"), event("x.one", "t2")]);
      const byAction = await storage.audit.query({ action: "x.one", limit: 10 });
      assert.deepEqual(
        byAction.map((e) => e.targetId),
        ["t2", "t1"],
      );
      assert.deepEqual(byAction[0]?.detail, { n: 1 });
      const page = await storage.audit.query({ targetId: "t1", limit: 1 });
      const next = await storage.audit.query({ targetId: "t1", limit: 1, before: page[0]?.id ?? 0 });
      assert.deepEqual([page[0]?.action, next[0]?.action], ["x.two", "x.one"]);
      const sql = "UPDATE audit_events SET actor = 'mallory'";
      const current = storage;
      if (current instanceof PostgresStorage) {
        await assert.rejects(current.database.query(sql), /append-only/);
      } else {
        assert.ok(current instanceof SqliteStorage);
        assert.throws(() => current.database.db.exec(sql), /append-only/);
      }
    });

    test("audit filters on time and outcome page through every match, newest first", async () => {
      // On SQLite these walk the table in slices of ids (made small here so that pages
      // cross them); the answers must be those of one statement over the whole table.
      if (storage instanceof SqliteStorage) storage.audit.walkSlice = 7;
      const base = NOW + 50_000_000;
      const events = Array.from({ length: 60 }, (_, i) => ({
        ...event(i % 4 === 0 ? "walk.a" : "walk.b", `w${i % 5}`),
        // Not in id order: events queued on another node arrive late.
        at: base + ((i * 37) % 60) * 1000,
        outcome: i % 3 === 0 ? ("success" as const) : ("failure" as const),
      }));
      await storage.audit.append(events);
      const stored = (await storage.audit.query({ since: base, limit: 1000 })).reverse();
      assert.equal(stored.length, 60);
      const cases: Array<Omit<AuditQuery, "limit">> = [
        { since: base + 20_000 },
        { until: base + 9_000 },
        { since: base + 10_000, until: base + 50_000, outcome: "success" },
        { since: base, outcome: "failure", action: "walk.a" },
        { since: base + 59_000, targetId: "w3" },
        { since: base + 61_000 },
      ];
      for (const filters of cases) {
        const expected = stored
          .filter(
            (e) =>
              (filters.since === undefined || e.at >= filters.since) &&
              (filters.until === undefined || e.at < filters.until) &&
              (filters.outcome === undefined || e.outcome === filters.outcome) &&
              (filters.action === undefined || e.action === filters.action) &&
              (filters.targetId === undefined || e.targetId === filters.targetId),
          )
          .map((e) => e.id)
          .reverse();
        const seen: number[] = [];
        let before: number | undefined;
        for (let pages = 0; pages < 100; pages++) {
          const page = await storage.audit.query({
            ...filters,
            // `until` alone also matches older events of other tests: kept within this one's.
            ...(filters.since === undefined ? { since: base } : {}),
            limit: 4,
            ...(before === undefined ? {} : { before }),
          });
          seen.push(...page.map((e) => e.id));
          if (page.length < 4) break;
          before = page.at(-1)?.id;
        }
        assert.deepEqual(seen, expected, JSON.stringify(filters));
      }
      if (storage instanceof SqliteStorage) {
        // Between slices the walk lets other work run.
        let ran = false;
        setImmediate(() => {
          ran = true;
        });
        assert.deepEqual(await storage.audit.query({ since: base + 61_000, limit: 4 }), []);
        assert.ok(ran, "the walk yielded to the event loop");
      }
    });

    test("bulk insert and count; list pages newest first by owner", async () => {
      const before = await storage.keys.count();
      const many = Array.from({ length: 2500 }, (_, i) =>
        record({ id: `key_bulk${String(i).padStart(5, "0")}`, ownerId: "bulk" }),
      );
      await storage.keys.insertMany(many);
      assert.equal(await storage.keys.count(), before + 2500);
      const page = await storage.keys.list({ ownerId: "bulk", limit: 3 });
      assert.deepEqual(
        page.map((k) => k.id),
        ["key_bulk02499", "key_bulk02498", "key_bulk02497"],
      );
      const next = await storage.keys.list({ ownerId: "bulk", limit: 2, before: "key_bulk02497" });
      assert.deepEqual(
        next.map((k) => k.id),
        ["key_bulk02496", "key_bulk02495"],
      );
    });

    test("meta values are set and replaced", async () => {
      assert.equal(await storage.meta.get("m"), null);
      await storage.meta.set("m", "1");
      await storage.meta.set("m", "2");
      assert.equal(await storage.meta.get("m"), "2");
    });

    test("meta claim: the first value stays, and claims made at once all get the same one", async () => {
      const claims = await Promise.all(Array.from({ length: 8 }, (_, i) => storage.meta.claim("claimed", `v${i}`)));
      assert.equal(new Set(claims).size, 1, claims.join(","));
      assert.equal(await storage.meta.claim("claimed", "later"), claims[0]);
      assert.equal(await storage.meta.get("claimed"), claims[0]);
    });
  });
}

for (const backend of backends()) {
  describe(`key change log and active scan (${backend.name})`, () => {
    let store: TestStore;
    let storage: Storage;
    before(async () => {
      store = await backend.create();
      storage = store.storage;
    });
    after(() => store.dispose());

    test("scanActive pages every key verification could accept, and nothing else", async () => {
      const active = Array.from({ length: 7 }, (_, i) => record({ id: `key_active${i}` }));
      const forever = record({ id: "key_forever", expiresAt: null, allowedAddresses: ["10.0.0.0/8", "2001:db8::1"] });
      const expired = record({ id: "key_expired", expiresAt: NOW - 1 });
      const revoked = record({ id: "key_revoked", revokedAt: NOW - 1 });
      const inGrace = record({ id: "key_ingrace", revokedAt: NOW + 60_000 });
      await storage.keys.insertMany([...active, forever, expired, revoked, inGrace]);
      const pages: string[][] = [];
      for await (const page of storage.keys.scanActive(NOW, 3)) pages.push(page.map((k) => k.id));
      assert.deepEqual(
        pages.map((p) => p.length),
        [3, 3, 3],
      );
      assert.deepEqual(pages.flat(), [...active.map((k) => k.id), "key_forever", "key_ingrace"].sort());
      const first = (await storage.keys.scanActive(NOW, 100)[Symbol.asyncIterator]().next()).value as IndexedKey[];
      const { digest, id, scopes, permissions, ownerId, rateLimit, allowedAddresses, expiresAt, revokedAt } = forever;
      assert.deepEqual(
        first.find((k) => k.id === "key_forever"),
        { digest, id, scopes, permissions, ownerId, rateLimit, allowedAddresses, expiresAt, revokedAt },
      );
      assert.equal(first.find((k) => k.id === "key_active0")?.allowedAddresses, null);
    });

    test("every change verification cares about is logged in order; bookkeeping is not", async () => {
      const start = await storage.keys.lastChange();
      const key = record({ id: "key_logged" });
      await storage.keys.insert(key, null);
      await storage.usage.add([{ keyId: key.id, bucket: NOW, outcome: "VALID", count: 1, lastAt: NOW + 5 }]);
      await storage.keys.update(key.id, { name: "renamed" }, null);
      await storage.keys.update(key.id, { scopes: ["b:write"] }, null);
      await storage.keys.update(key.id, { allowedAddresses: ["192.0.2.0/24"] }, null);
      await storage.keys.revoke(key.id, NOW + 10, "test", null);
      const replacement = record({ id: "key_logged_next" });
      const other = record({ id: "key_logged_other" });
      await storage.keys.insert(other, null);
      assert.equal(
        await storage.keys.rotate(other.id, replacement, { at: NOW, oldExpiresAt: NOW + 1000, revokeOld: false }, null),
        true,
      );
      const changes = await storage.keys.changesSince(start, 100);
      assert.deepEqual(changes.ids, [
        "key_logged",
        "key_logged",
        "key_logged",
        "key_logged",
        "key_logged_other",
        "key_logged_other",
        "key_logged_next",
      ]);
      assert.equal(changes.gap, false);
      assert.equal(changes.last, await storage.keys.lastChange());
      const paged = await storage.keys.changesSince(start, 2);
      assert.deepEqual(paged.ids, ["key_logged", "key_logged"]);
      const rest = await storage.keys.changesSince(paged.last, 100);
      assert.equal(rest.ids.length, 5);
      assert.deepEqual(await storage.keys.changesSince(changes.last, 100), { ids: [], last: changes.last, gap: false });
    });

    test("pruning keeps the newest entry and reports a gap to a reader that fell behind", async () => {
      const newest = await storage.keys.lastChange();
      assert.ok(newest > 2);
      await storage.keys.pruneChanges(Date.now() + 60_000);
      const afterPrune = await storage.keys.changesSince(0, 100);
      assert.equal(afterPrune.gap, true);
      assert.deepEqual(await storage.keys.changesSince(newest - 1, 100), {
        ids: ["key_logged_next"],
        last: newest,
        gap: false,
      });
      assert.equal(await storage.keys.lastChange(), newest);
    });
  });
}

describe("PostgreSQL migrations", () => {
  test("several nodes starting at once apply each migration once", {
    skip: !backends().some((b) => b.name === "postgres"),
  }, async () => {
    const schema = `gh_test_${randomBytes(6).toString("hex")}`;
    const nodes = await Promise.all(
      Array.from({ length: 4 }, () => PostgresStorage.open(TEST_DATABASE_URL, { schema, poolSize: 2 })),
    );
    try {
      const [first] = nodes;
      assert.ok(first);
      const { rows } = await first.database.query<{ version: number }>(
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      assert.deepEqual(
        rows.map((r) => r.version),
        [...new Set(rows.map((r) => r.version))],
      );
      assert.ok(rows.length >= 1);
    } finally {
      await Promise.all(nodes.map((n) => n.close()));
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    }
  });
});

for (const backend of backends()) {
  describe(`audit append is atomic (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("a batch larger than one statement's 1,000 events is written whole or not at all", async () => {
      const events = Array.from({ length: 2500 }, () => event("audit.atomic"));
      // A time that is not a whole number of ms: refused by both (INTEGER STRICT, BIGINT).
      events[2100] = { ...event("audit.atomic"), at: NOW + 0.5 };
      await assert.rejects(store.storage.audit.append(events));
      assert.deepEqual(await store.storage.audit.query({ action: "audit.atomic", limit: 10 }), []);
      events[2100] = event("audit.atomic");
      await store.storage.audit.append(events);
      assert.equal((await store.storage.audit.query({ action: "audit.atomic", limit: 5000 })).length, 2500);
    });
  });
}
