/**
 * PostgreSQL breaks a deadlock by rolling back one of the transactions in it, and asks the
 * client to run it again (SQLSTATE 40P01; 40001 for serialization failures).
 * `PostgresDatabase` does, for transactions and single statements alike: a request that
 * met a deadlock is answered as if it had not (it was a 500 before), and one that meets
 * a deadlock on every attempt is a 503 BUSY with Retry-After, with nothing written.
 *
 * The deadlock is made to happen every time: a third connection holds a row lock, the test
 * waits (pg_blocking_pids) until Gatehouse's transaction queues behind it, then asks for a
 * row that transaction holds. Gatehouse's backend, which started waiting first, is the one
 * PostgreSQL's deadlock check (deadlock_timeout, 1 s by default) rolls back.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { BusyError } from "../../src/errors/gatehouse-error.ts";
import { newId } from "../../src/lib/ids.ts";
import { batchedStatement } from "../../src/storage/postgres/batched-statement.ts";
import { PostgresDatabase } from "../../src/storage/postgres/database.ts";
import type { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { type LockPeers, lockPeers } from "../support/lock-peers.ts";
import { auditEventInput, refreshTokenRecord, userRecord } from "../support/records.ts";

const postgres = backends().find((backend) => backend.name === "postgres");

describe("PostgreSQL deadlocks are retried", { skip: !postgres }, () => {
  let store: TestStore;
  let storage: PostgresStorage;
  let peers: LockPeers;

  before(async () => {
    store = await (postgres as NonNullable<typeof postgres>).create();
    storage = store.storage as PostgresStorage;
    const schema = storage.database.schema;
    // The locker never runs PostgreSQL's deadlock check first: the victim is Gatehouse's side.
    peers = await lockPeers(schema, "-c deadlock_timeout=20s");
    await storage.database.query("CREATE SEQUENCE attempts");
  });
  after(async () => {
    await peers?.end();
    await store?.dispose();
  });

  test("a user disabled while another transaction holds one of its refresh tokens: the deadlock is retried, written once", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now), null);
    const token = refreshTokenRecord(userId, now, { familyId: `fam_deadlock_${now}` });
    await storage.tokens.insertRefresh(token, null);
    const requestId = `deadlock-${now}`;

    const { locker, lockerPid } = peers;
    await locker.query("BEGIN");
    await locker.query("SELECT 1 FROM refresh_tokens WHERE id = $1 FOR UPDATE", [token.id]);
    // Disabling locks the user's row, then waits for the token's.
    const disabled = storage.users.disable(
      userId,
      Date.now(),
      auditEventInput({ actor: "key:test", action: "user.disable", outcome: "success", requestId }),
    );
    await peers.newWaiter([lockerPid]);
    // The cycle: the locker asks for the user's row. This returns only once the disable's
    // transaction has let go of it, and that transaction could not have committed (it
    // needed the token the locker still holds): PostgreSQL rolled it back.
    await locker.query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", [userId]);
    await locker.query("ROLLBACK");

    const record = await disabled;
    assert.equal(record?.id, userId);
    assert.equal(record?.status, "disabled");
    const { rows } = await storage.database.query<{ revoked: boolean }>(
      "SELECT revoked_at IS NOT NULL AS revoked FROM refresh_tokens WHERE id = $1",
      [token.id],
    );
    assert.deepEqual(rows, [{ revoked: true }]);
    const events = await storage.database.query("SELECT 1 FROM audit_events WHERE request_id = $1", [requestId]);
    assert.equal(events.rowCount, 1, "the rolled-back attempt's audit event is gone, the retry's is there once");
  });

  test("a transaction that deadlocks on every attempt: three attempts, then 503 BUSY, nothing written", async () => {
    await storage.database.query("ALTER SEQUENCE attempts RESTART");
    const requestId = `always-${Date.now()}`;
    const failing = storage.database.transaction(async (client) => {
      await client.query(
        "INSERT INTO audit_events (at, actor, action, outcome, request_id) VALUES ($1, 'key:test', 'test.deadlock', 'success', $2)",
        [Date.now(), requestId],
      );
      // Sequences are not transactional: the count survives each rollback.
      await client.query(
        "DO $$ BEGIN PERFORM nextval('attempts'); RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$",
      );
    });
    const error = await failing.then(
      () => assert.fail("expected a BusyError"),
      (caught: unknown) => caught,
    );
    assert.ok(error instanceof BusyError, String(error));
    assert.equal(error.status, 503);
    assert.equal(error.headers?.["retry-after"], "1");
    assert.equal((error.cause as { code?: string }).code, "40P01");
    assert.equal(await attempts(), 3);
    const events = await storage.database.query("SELECT 1 FROM audit_events WHERE request_id = $1", [requestId]);
    assert.equal(events.rowCount, 0);
  });

  test("a transaction that deadlocks once goes through on its second attempt", async () => {
    await storage.database.query("ALTER SEQUENCE attempts RESTART");
    const result = await storage.database.transaction(async (client) => {
      await client.query(
        "DO $$ BEGIN IF nextval('attempts') = 1 THEN RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END IF; END $$",
      );
      return "done";
    });
    assert.equal(result, "done");
    assert.equal(await attempts(), 2);
  });

  test("a single statement is retried the same way; serialization failures too", async () => {
    await storage.database.query("ALTER SEQUENCE attempts RESTART");
    await storage.database.query(
      "DO $$ BEGIN IF nextval('attempts') < 3 THEN RAISE EXCEPTION 'could not serialize' USING ERRCODE = '40001'; END IF; END $$",
    );
    assert.equal(await attempts(), 3);

    await storage.database.query("ALTER SEQUENCE attempts RESTART");
    await assert.rejects(
      storage.database.query(
        "DO $$ BEGIN PERFORM nextval('attempts'); RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$",
      ),
      BusyError,
    );
    assert.equal(await attempts(), 3);
  });

  test("other errors are not retried", async () => {
    await storage.database.query("ALTER SEQUENCE attempts RESTART");
    await assert.rejects(
      storage.database.transaction(async (client) => {
        await client.query(
          "DO $$ BEGIN PERFORM nextval('attempts'); RAISE EXCEPTION 'taken' USING ERRCODE = '23505'; END $$",
        );
      }),
      (error: { code?: string }) => error.code === "23505",
    );
    assert.equal(await attempts(), 1);
  });

  test("no retry starts once a statement's timeout has passed since the first attempt", async () => {
    const schema = storage.database.schema;
    const slow = new PostgresDatabase(TEST_DATABASE_URL, { schema, max: 1, statementTimeoutMs: 2000 });
    try {
      await storage.database.query("ALTER SEQUENCE attempts RESTART");
      await assert.rejects(
        slow.query(
          "DO $$ BEGIN PERFORM nextval('attempts'); PERFORM pg_sleep(1.2); RAISE EXCEPTION 'deadlock detected' USING ERRCODE = '40P01'; END $$",
        ),
        BusyError,
      );
      // Two attempts take at least 2.4 s, past the 2 s: a third never starts.
      assert.ok((await attempts()) <= 2, `${await attempts()} attempts`);
    } finally {
      await slow.close();
    }
  });

  async function attempts(): Promise<number> {
    const { rows } = await storage.database.query<{ n: number }>("SELECT last_value AS n FROM attempts");
    return Number(rows[0]?.n);
  }
});

test("a batch that met a conflict on every retry fails whole, without a statement per key", async () => {
  let statements = 0;
  const loader = batchedStatement<number, number>(async () => {
    statements++;
    throw new BusyError("Other changes to the same records were being made at the same moment.");
  });
  const answers = await Promise.allSettled([1, 2, 3, 4].map((key) => loader.load(key)));
  assert.ok(answers.every((answer) => answer.status === "rejected" && answer.reason instanceof BusyError));
  assert.equal(statements, 1);
});
