import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { StorageUnavailableError } from "../../src/errors/gatehouse-error.ts";
import { digestKey, generateKey } from "../../src/keys/key-format.ts";
import { newId } from "../../src/lib/ids.ts";
import { PostgresDatabase } from "../../src/storage/postgres/database.ts";
import { PostgresKeyRepository } from "../../src/storage/postgres/key-repository.ts";
import type { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import type { ApiKeyRecord } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken } from "../../src/tokens/opaque-token.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { auditEventInput, keyRecord, refreshTokenRecord, userRecord } from "../support/records.ts";

const postgres = backends().find((backend) => backend.name === "postgres");

/**
 * Fewer round trips on PostgreSQL's hot paths. Point reads asked for in one turn of the
 * event loop share one statement (src/storage/postgres/batched-statement.ts): keys by digest,
 * users by id, denied access tokens, revoked refresh families, cookie sessions, refresh
 * tokens for rotation. Each must still get its own answer, and a statement that fails must
 * fail every lookup it carried. A sign-in's writes are one statement, all or nothing.
 */
describe("PostgreSQL round trips on hot paths", { skip: postgres === undefined }, () => {
  let store: TestStore;
  let storage: PostgresStorage;
  let keys: ApiKeyRecord[];
  before(async () => {
    store = await (postgres as NonNullable<typeof postgres>).create();
    storage = store.storage as PostgresStorage;
    const now = Date.now();
    keys = Array.from({ length: 300 }, (_, i) => keyRecord(now - i, { name: `key ${i}`, scopes: [`s:${i}`] }));
    await storage.keys.insertMany(keys);
  });
  after(async () => {
    await store.dispose();
  });

  test("lookups made together go out as few statements, each answered with its own key or null", async () => {
    const statements: string[] = [];
    const database = storage.database;
    const query = database.query.bind(database);
    database.query = ((sql: string, params?: unknown[]) => {
      statements.push(sql);
      return query(sql, params);
    }) as typeof database.query;
    try {
      const unknown = Array.from({ length: 20 }, () => digestKey(generateKey("gate")));
      // Known keys (more than one statement's worth), unknown digests and repeats, interleaved.
      const asked: Array<{ digest: Buffer; expected: ApiKeyRecord | null }> = [];
      for (const [i, key] of keys.entries()) {
        asked.push({ digest: Buffer.from(key.digest), expected: key });
        if (i % 15 === 0) asked.push({ digest: unknown[i / 15] as Buffer, expected: null });
        if (i % 50 === 0) asked.push({ digest: Buffer.from(key.digest), expected: key });
      }
      const answers = await Promise.all(asked.map(({ digest }) => storage.keys.findByDigest(digest)));
      for (const [i, answer] of answers.entries()) {
        const expected = asked[i]?.expected ?? null;
        if (expected === null) assert.equal(answer, null, `lookup ${i} found a key for an unknown digest`);
        else {
          assert.equal(answer?.id, expected.id, `lookup ${i}`);
          assert.deepEqual(answer?.scopes, expected.scopes);
          assert.ok(answer?.digest.equals(expected.digest));
        }
      }
      // Two answers for one digest are two record objects (their arrays and buffers are shared).
      assert.notEqual(answers[0], answers[2]);
      assert.ok(asked.length > 300);
      assert.ok(
        statements.length >= 2 && statements.length <= Math.ceil(asked.length / 128),
        `${asked.length} lookups took ${statements.length} statements`,
      );
    } finally {
      database.query = query;
    }
  });

  test("one lookup alone is answered, and a deleted key is not found by the next batch", async () => {
    const [first] = keys;
    assert.equal((await storage.keys.findByDigest(Buffer.from((first as ApiKeyRecord).digest)))?.id, first?.id);
    await storage.database.query("DELETE FROM api_keys WHERE id = $1", [first?.id]);
    // No cache between batches: the next lookup reads the table as it now is.
    assert.equal(await storage.keys.findByDigest(Buffer.from((first as ApiKeyRecord).digest)), null);
  });

  test("a statement that fails fails every lookup it carried, as unavailable, and the next batch works", async () => {
    const database = new PostgresDatabase(TEST_DATABASE_URL, {
      schema: storage.database.schema,
      max: 2,
      statementTimeoutMs: 300,
    });
    const repository = new PostgresKeyRepository(database);
    const locker = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query(`LOCK TABLE ${storage.database.schema}.api_keys IN ACCESS EXCLUSIVE MODE`);
      const settled = await Promise.allSettled(
        keys.slice(1, 6).map((key) => repository.findByDigest(Buffer.from(key.digest))),
      );
      for (const outcome of settled) {
        assert.equal(outcome.status, "rejected");
        assert.ok(outcome.reason instanceof StorageUnavailableError, String(outcome.reason));
      }
      await locker.query("ROLLBACK");
      assert.equal((await repository.findByDigest(Buffer.from((keys[1] as ApiKeyRecord).digest)))?.id, keys[1]?.id);
    } finally {
      await locker.end();
      await database.close();
    }
  });

  // Regression: PostgreSQL refuses a whole text[] with a NUL in any element (22021), so
  // one request's malformed value failed (500) every other lookup in its batch.
  test("a value PostgreSQL refuses fails only its own lookup, not the others in its batch", async () => {
    const now = Date.now();
    const user = userRecord(newId("usr", now), now, { email: "nul-neighbour@example.com" });
    await storage.users.insert(user, null);
    const [good, bad] = await Promise.allSettled([
      storage.users.findById(user.id),
      storage.users.findById("usr_\u0000x"),
    ]);
    assert.equal(good.status, "fulfilled", String((good as PromiseRejectedResult).reason));
    assert.equal((good as PromiseFulfilledResult<{ id: string } | null>).value?.id, user.id);
    assert.equal(bad.status, "rejected");
    const tokens = await Promise.allSettled([
      storage.tokens.isJtiDenied("jti_fine"),
      storage.tokens.isJtiDenied("jti_\u0000"),
      storage.tokens.isFamilyRevoked("fam_fine"),
      storage.tokens.isFamilyRevoked("fam_\u0000"),
    ]);
    assert.deepEqual(
      tokens.map((outcome) => outcome.status),
      ["fulfilled", "rejected", "fulfilled", "rejected"],
    );
  });

  /** Counts the statements the store sends while `run` runs. */
  async function counted<T>(run: () => Promise<T>): Promise<{ result: T; statements: number }> {
    const database = storage.database;
    const query = database.query.bind(database);
    let statements = 0;
    database.query = ((sql: string, params?: unknown[]) => {
      statements++;
      return query(sql, params);
    }) as typeof database.query;
    try {
      return { result: await run(), statements };
    } finally {
      database.query = query;
    }
  }

  test("users by id: together in one statement, each its own user or null", async () => {
    const now = Date.now();
    const users = Array.from({ length: 40 }, (_, i) =>
      userRecord(newId("usr", now + i), now, { email: `b${i}@example.com` }),
    );
    for (const user of users) await storage.users.insert(user, null);
    const asked = [...users.map((user) => user.id), "usr_missing", (users[3] as { id: string }).id];
    const { result, statements } = await counted(() => Promise.all(asked.map((id) => storage.users.findById(id))));
    assert.equal(statements, 1);
    for (const [i, user] of result.entries()) {
      if (asked[i] === "usr_missing") assert.equal(user, null);
      else {
        assert.equal(user?.id, asked[i]);
        assert.equal(user?.email, users.find((u) => u.id === asked[i])?.email);
      }
    }
    assert.notEqual(result[3], result.at(-1));
  });

  test("denied access tokens and revoked refresh families: together in one statement each, each its own answer", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now, { email: "families@example.com" }), null);
    const families = Array.from({ length: 30 }, (_, i) => `fam_batch_${i}`);
    for (const familyId of families) {
      await storage.tokens.insertRefresh(refreshTokenRecord(userId, now, { familyId }), null);
    }
    // Every third family revoked, the revocation denying one access token (by jti) each.
    const revoked = families.filter((_, i) => i % 3 === 0);
    for (const familyId of revoked) {
      await storage.tokens.revokeFamily(
        familyId,
        { at: now, denyJti: { jti: `jti_${familyId}`, expiresAt: now + 900_000 } },
        null,
      );
    }
    const jtis = families.map((familyId) => `jti_${familyId}`);
    const { result, statements } = await counted(() =>
      Promise.all([
        Promise.all(families.map((familyId) => storage.tokens.isFamilyRevoked(familyId))),
        Promise.all(jtis.map((jti) => storage.tokens.isJtiDenied(jti))),
      ]),
    );
    assert.equal(statements, 2);
    const [familyAnswers, jtiAnswers] = result;
    assert.deepEqual(
      familyAnswers,
      families.map((familyId) => revoked.includes(familyId)),
    );
    assert.deepEqual(
      jtiAnswers,
      families.map((familyId) => revoked.includes(familyId)),
    );
    assert.equal(await storage.tokens.isFamilyRevoked("fam_unknown"), false);
  });

  test("cookie sessions by digest: together in one statement, each its own session or null", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now, { email: "sessions@example.com" }), null);
    const sessions = Array.from({ length: 25 }, (_, i) => ({
      id: newId("ses", now + i),
      digest: digestOpaqueToken(newOpaqueToken()),
      userId,
      createdAt: now,
      lastSeenAt: now,
      expiresAt: now + 3_600_000,
      idleExpiresAt: now + 1_800_000,
      revokedAt: null,
      ip: null,
      userAgent: `agent ${i}`,
    }));
    for (const session of sessions) await storage.sessions.insert(session, null, null);
    const asked = [...sessions.map((session) => session.digest), digestOpaqueToken(newOpaqueToken())];
    const { result, statements } = await counted(() =>
      Promise.all(asked.map((digest) => storage.sessions.findByDigest(Buffer.from(digest)))),
    );
    assert.equal(statements, 1);
    assert.deepEqual(
      result.map((session) => session?.userAgent ?? null),
      [...sessions.map((session) => session.userAgent), null],
    );
  });

  test("refresh tokens for rotation: together in one statement; a right id with a wrong secret finds nothing", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now, { email: "rotations@example.com", scopes: ["a:b"] }), null);
    const tokens = Array.from({ length: 20 }, (_, i) =>
      refreshTokenRecord(userId, now, { id: newId("rtk", now + i), familyId: `fam_rot_${i}`, scope: `s${i}` }),
    );
    for (const token of tokens) await storage.tokens.insertRefresh(token, null);
    const forged = digestOpaqueToken(newOpaqueToken());
    const refs = [
      ...tokens.map((token) => ({ id: token.id, digest: Buffer.from(token.digest) })),
      { id: (tokens[4] as { id: string }).id, digest: forged },
      { id: "rtk_unknown", digest: forged },
    ];
    const { result, statements } = await counted(() =>
      Promise.all(refs.map((ref) => storage.tokens.findRefreshForRotation(ref))),
    );
    assert.equal(statements, 1);
    assert.deepEqual(
      result.map((found) => found?.record.scope ?? null),
      [...tokens.map((token) => token.scope), null, null],
    );
    assert.ok(result.slice(0, 20).every((found) => found?.userActive === true && found.userScopes[0] === "a:b"));
  });

  test("a sign-in's refresh token and its audit event are one statement: both written, or neither", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now, { email: "signin-write@example.com" }), null);
    const token = (i: number) =>
      refreshTokenRecord(userId, now, { id: newId("rtk", now + i), familyId: `fam_signin_${i}` });
    const audit = auditEventInput({
      at: now,
      actor: `user:${userId}`,
      action: "auth.login",
      targetId: userId,
      requestId: "req_signin_write",
    });
    const written = token(1);
    const { statements } = await counted(() => storage.tokens.insertRefresh(written, audit));
    assert.equal(statements, 1);
    assert.equal((await storage.tokens.findRefresh({ id: written.id, digest: written.digest }))?.id, written.id);
    const events = await storage.database.query("SELECT 1 FROM audit_events WHERE request_id = $1", [
      "req_signin_write",
    ]);
    assert.equal(events.rowCount, 1);
    // An audit row the table refuses (its CHECK on outcome) takes the token with it.
    const refused = token(2);
    await assert.rejects(
      storage.tokens.insertRefresh(refused, { ...audit, outcome: "maybe" as "success", requestId: "req_refused" }),
    );
    assert.equal(await storage.tokens.findRefresh({ id: refused.id, digest: refused.digest }), null);
  });

  test("rotations together: one spend statement; a token twice, a revoked one and the rest each get their own outcome", async () => {
    const now = Date.now();
    const userId = newId("usr", now);
    await storage.users.insert(userRecord(userId, now, { email: "spends@example.com" }), null);
    const token = (family: string, i: number) =>
      refreshTokenRecord(userId, now, { id: newId("rtk", now + i), familyId: family });
    const tokens = Array.from({ length: 12 }, (_, i) => token(`fam_spend_${i}`, i));
    for (const t of tokens) await storage.tokens.insertRefresh(t, null);
    const [twice, revoked] = tokens as [(typeof tokens)[0], (typeof tokens)[0]];
    await storage.tokens.revokeFamily(revoked.familyId, { at: now, denyJti: null }, null);
    const audit = (requestId: string) =>
      auditEventInput({
        at: now,
        actor: `user:${userId}`,
        action: "auth.refresh",
        targetId: userId,
        requestId,
        detail: { n: 1 },
      });
    const asked = [...tokens, twice];
    const { result, statements } = await counted(() =>
      Promise.all(
        asked.map((t, i) =>
          storage.tokens.rotateRefresh({ id: t.id, digest: t.digest }, token(t.familyId, 100 + i), now + 1, {
            rotated: audit(`req_spend_${i}`),
            reused: null,
          }),
        ),
      ),
    );
    const outcomes = result.map((rotation) => rotation.outcome);
    assert.deepEqual(outcomes.slice(2, 12), Array(10).fill("rotated"));
    assert.equal(outcomes[1], "revoked");
    // The token asked twice: one spend wins, the other is a reuse and ends the family.
    assert.deepEqual([outcomes[0], outcomes[12]].sort(), ["reused", "rotated"]);
    assert.equal(await storage.tokens.isFamilyRevoked(twice.familyId), true);
    // One statement spent them all; the reuse and the revoked token took the slow way
    // (a transaction each: BEGIN, reads, revocations, COMMIT).
    const events = await storage.database.query<{ request_id: string; detail: unknown }>(
      "SELECT request_id, detail FROM audit_events WHERE request_id LIKE 'req_spend_%'",
    );
    assert.equal(events.rowCount, 11, "an audit event for each rotation that happened, none for the others");
    assert.ok(events.rows.every((row) => JSON.stringify(row.detail) === '{"n":1}'));
    // (The slow way's transactions run on their own connections, not counted here.)
    assert.equal(statements, 1, `${statements} statements outside transactions for ${asked.length} rotations`);
  });
});
