import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { type Logger, pino } from "pino";
import { ANONYMOUS_FAILURES_PER_MINUTE, AuditLog } from "../../src/audit/audit-log.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import type { AuditEventInput } from "../../src/storage/types.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { TcpProxy } from "../support/processes.ts";

const T0 = Date.UTC(2026, 11, 7, 12, 0, 0);
const LIMIT = ANONYMOUS_FAILURES_PER_MINUTE;

function failure(
  actor: string,
  ip: string,
  action: string,
  at: number,
  fields: Partial<AuditEventInput> = {},
): AuditEventInput {
  return {
    at,
    actor,
    action,
    outcome: "failure",
    targetType: null,
    targetId: null,
    ip,
    userAgent: null,
    requestId: null,
    detail: { reason: "UNKNOWN" },
    ...fields,
  };
}

for (const backend of backends()) {
  describe(`audit log (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    const written = (query: { actor?: string; action?: string; targetId?: string }, since: number) =>
      store.storage.audit.query({ ...query, since, limit: 1000 });

    test("a sender's anonymous failures that name nothing are written up to the minute's allowance, then counted", async () => {
      let now = T0;
      const audit = new AuditLog(store.storage, { intervalMs: 0, clock: () => now });
      const flood = "198.51.100.7";
      for (let i = 0; i < LIMIT + 40; i++) {
        audit.record(failure("anonymous", flood, "token.refresh", T0 + i));
        // Credentials in URLs have their own allowance, and the first hints past it are kept.
        audit.record(
          failure("anonymous", flood, "auth.credential_in_url", T0 + i, { detail: { hint: `gate_h${i % 15}…` } }),
        );
        // A resource server's failed verifications are never held back: it is authenticated.
        audit.record(failure("key:key_resourceserver", flood, "key.verify", T0 + i));
      }
      // Padding does not hide an event that names something Gatehouse holds.
      audit.record(
        failure("anonymous", flood, "token.refresh", T0 + 500, { targetType: "user", targetId: "user_victim" }),
      );
      for (let i = 0; i < 5; i++) audit.record(failure("anonymous", "198.51.100.8", "token.refresh", T0 + i));
      await audit.flush();
      // Within the minute: the allowances written, nothing summed up yet.
      assert.equal((await written({ action: "token.refresh" }, T0 - 1)).length, LIMIT + 1 + 5);
      assert.equal((await written({ action: "auth.credential_in_url" }, T0 - 1)).length, LIMIT);
      assert.equal((await written({ targetId: "user_victim" }, T0 - 1)).length, 1);
      assert.equal((await written({ actor: "key:key_resourceserver" }, T0 - 1)).length, LIMIT + 40);
      assert.equal((await written({ action: "audit.suppressed" }, T0 - 1)).length, 0);

      // The minute ends: one event per action says how many were not written.
      now = T0 + 60_000;
      await audit.flush();
      const summaries = await written({ action: "audit.suppressed" }, T0 - 1);
      const byAction = new Map(summaries.map((event) => [(event.detail as { action: string }).action, event]));
      assert.equal(summaries.length, 2, "the quiet sender has no summary");
      assert.equal(byAction.get("token.refresh")?.ip, flood);
      assert.deepEqual(byAction.get("token.refresh")?.detail, {
        action: "token.refresh",
        minute: new Date(T0).toISOString(),
        events: 40,
        written: LIMIT,
      });
      const hints = (byAction.get("auth.credential_in_url")?.detail as { hints?: string[] } | undefined)?.hints;
      assert.equal(hints?.length, 10, "the first ten distinct hints are kept");
    });

    test("an IPv6 sender is its /64, and what is counted when the log stops is summed up", async () => {
      const since = T0 + 3_600_000;
      const now = since;
      const audit = new AuditLog(store.storage, { intervalMs: 0, clock: () => now });
      for (let i = 0; i < LIMIT + 3; i++) {
        audit.record(failure("anonymous", `2001:db8:1:2::${(i + 1).toString(16)}`, "auth.access_token", now + i));
      }
      await audit.stop();
      const [summary, ...more] = await written({ action: "audit.suppressed" }, since - 1);
      assert.equal(more.length, 0);
      assert.equal(summary?.ip, "2001:db8:1:2::/64");
      assert.equal((summary?.detail as { events?: number } | undefined)?.events, 3);
      assert.equal((await written({ action: "auth.access_token" }, since - 1)).length, LIMIT);
    });
  });
}

/** A pino logger whose lines the test reads. */
function capturedLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: "info" }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { log, lines };
}

function writtenSince(query: { since: number }, store: TestStore) {
  return store.storage.audit.query({ ...query, limit: 1000 });
}

const SECRET_HINT = "gate_zz9q…K7pX";

for (const backend of backends()) {
  describe(`audit log writes what storage refuses around (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("one event storage refuses is dropped with a log line; the rest of its batch is written", async () => {
      const { log, lines } = capturedLog();
      const audit = new AuditLog(store.storage, { intervalMs: 0, log });
      const at = T0 + 7_200_000;
      const event = (n: number, fields: Partial<AuditEventInput> = {}) =>
        failure("key:key_rs", "192.0.2.1", "key.verify", at + n, { detail: { n, hint: SECRET_HINT }, ...fields });
      audit.record(event(1));
      // U+0000 in detail: PostgreSQL's jsonb cannot hold it (SQLite's JSON text escapes it).
      audit.record(event(2, { detail: { n: 2, url: "https://example.com/\u0000", hint: SECRET_HINT } }));
      audit.record(event(3));
      // Not a whole number of ms: refused by both stores.
      audit.record(event(4, { at: at + 4.5, action: "key.leak_report" }));
      audit.record(event(5));
      // A detail JSON cannot hold (a BigInt): refused before it reaches storage, with a
      // TypeError that carries no database code. It was kept and retried for ever.
      audit.record(event(6, { action: "user.update", detail: { n: 6, big: 1n } }));
      audit.record(event(7));
      // A value the driver will not bind (node:sqlite: ERR_INVALID_ARG_VALUE; PostgreSQL:
      // out of range), refused the same way every time.
      audit.record(event(9, { action: "key.rotate", at: (2n ** 70n) as unknown as number }));
      await audit.flush();
      const kept = (await writtenSince({ since: at }, store)).map((e) => (e.detail as { n: number }).n).sort();
      assert.deepEqual(kept, backend.name === "postgres" ? [1, 3, 5, 7] : [1, 2, 3, 5, 7]);
      const refusals = lines.filter((line) => line.msg === "audit event refused by storage; dropped");
      assert.deepEqual(
        refusals.map((line) => line.action),
        backend.name === "postgres"
          ? ["key.verify", "key.leak_report", "user.update", "key.rotate"]
          : ["key.leak_report", "user.update", "key.rotate"],
      );
      for (const line of refusals) assert.equal(typeof line.reason, "string");
      assert.ok(!JSON.stringify(lines).includes(SECRET_HINT), "no log line holds the event's detail");

      // Nothing is left behind to block what comes next.
      audit.record(event(8));
      await audit.flush();
      assert.equal((await writtenSince({ since: at + 8 }, store)).length, 1);
    });

    test("a failure that is not storage refusing the data (a closed store, busy, full) keeps the batch", async () => {
      const own = await backend.create();
      const { log, lines } = capturedLog();
      const audit = new AuditLog(own.storage, { intervalMs: 0, log });
      for (let n = 0; n < 3; n++) audit.record(failure("key:key_rs", "192.0.2.1", "key.verify", T0 + n));
      await own.dispose();
      await audit.flush();
      assert.ok(lines.some((line) => line.msg === "audit flush failed; will retry"));
      assert.ok(
        !lines.some((line) => line.msg === "audit event refused by storage; dropped"),
        "kept for the next flush, not dropped event by event",
      );
    });

    test("past the queue's bound new events are dropped and counted in an error log line", async () => {
      const { log, lines } = capturedLog();
      const audit = new AuditLog(store.storage, { intervalMs: 0, maxBatch: 1000, maxQueued: 10, log });
      const at = T0 + 10_800_000;
      for (let n = 0; n < 13; n++) {
        audit.record(failure("key:key_rs", "192.0.2.1", "key.verify", at + n, { detail: { n } }));
      }
      await audit.flush();
      const kept = (await writtenSince({ since: at }, store))
        .map((e) => (e.detail as { n: number }).n)
        .sort((a, b) => a - b);
      assert.deepEqual(kept, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], "the oldest are kept");
      const full = lines.filter((line) => line.msg === "audit queue full; events dropped");
      assert.deepEqual(
        full.map((line) => line.dropped),
        [3],
      );
    });
  });
}

describe("audit log while PostgreSQL is unreachable", { skip: !backends().some((b) => b.name === "postgres") }, () => {
  test("a batch that fails because storage is unavailable is kept whole and written once when it returns", async () => {
    const proxy = new TcpProxy({ host: "127.0.0.1", port: 5432 });
    const port = await proxy.start();
    const url = new URL(TEST_DATABASE_URL);
    url.port = String(port);
    const schema = `gh_test_${randomBytes(6).toString("hex")}`;
    const storage = await PostgresStorage.open(url.toString(), { schema, poolSize: 2 });
    try {
      const { log, lines } = capturedLog();
      const audit = new AuditLog(storage, { intervalMs: 0, log });
      for (let n = 0; n < 3; n++) audit.record(failure("key:key_rs", "192.0.2.1", "key.verify", T0 + n));
      await proxy.cut();
      await audit.flush();
      assert.ok(lines.some((line) => line.msg === "audit flush failed; will retry"));
      assert.ok(!lines.some((line) => line.msg === "audit event refused by storage; dropped"));
      await proxy.restore();
      await audit.flush();
      assert.equal((await storage.audit.query({ action: "key.verify", limit: 10 })).length, 3);
    } finally {
      await storage.close();
      await proxy.cut();
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
      await client.end();
    }
  });
});
