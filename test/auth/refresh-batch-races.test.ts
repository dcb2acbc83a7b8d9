/**
 * Refresh rotations batched on PostgreSQL (src/storage/postgres/token-repository.ts,
 * `spends`): the rotations asked for in one turn are spent by one statement. What must
 * still hold, whatever the batch holds and whoever else is writing: of the rotations of
 * one token exactly one wins (in one batch, across batches, across nodes); the others are
 * reuse (family revoked, `reused` audited, never a second live successor); a successor and
 * its audit event exist only for a token spent; a revocation running beside a batch
 * neither fails nor leaves a live successor; one bad rotation fails only itself; values
 * arrive as written.
 *
 * The races are made to happen every time: a third connection holds a row lock, and the
 * test waits (pg_blocking_pids) until the others queue behind it; nothing here depends on
 * timing.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import { StorageUnavailableError } from "../../src/errors/gatehouse-error.ts";
import { newId } from "../../src/lib/ids.ts";
import { PostgresDatabase } from "../../src/storage/postgres/database.ts";
import type { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { PostgresTokenRepository } from "../../src/storage/postgres/token-repository.ts";
import type { AuditEventInput, RefreshRotation, RefreshTokenRecord } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken } from "../../src/tokens/opaque-token.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { type LockPeers, lockPeers } from "../support/lock-peers.ts";
import { auditEventInput, refreshTokenRecord, userRecord } from "../support/records.ts";

const postgres = backends().find((backend) => backend.name === "postgres");

describe("refresh rotations batched on PostgreSQL, racing each other and revocations", { skip: !postgres }, () => {
  let store: TestStore;
  let storage: PostgresStorage;
  /**
   * A second node on the same schema. Its statements are planned as PostgreSQL plans them on
   * a large table (an index lookup per rotation, in the batch's order), whatever the size
   * of this test's table: on a small one it scans the table and locks rows in their
   * physical order instead.
   */
  let otherDatabase: PostgresDatabase;
  let other: PostgresTokenRepository;
  let peers: LockPeers;
  let locker: pg.Client;
  let lockerPid: number;

  before(async () => {
    store = await (postgres as NonNullable<typeof postgres>).create();
    storage = store.storage as PostgresStorage;
    const schema = storage.database.schema;
    // A connection string's options win over the ones PostgresDatabase sets (search_path).
    const url = new URL(TEST_DATABASE_URL);
    url.searchParams.set(
      "options",
      `-c search_path=${schema} -c enable_hashjoin=off -c enable_mergejoin=off -c enable_seqscan=off`,
    );
    otherDatabase = new PostgresDatabase(url.toString(), { schema, max: 4 });
    const { rows } = await otherDatabase.query<{ setting: string }>(
      "SELECT current_setting('enable_hashjoin') || current_setting('search_path') AS setting",
    );
    assert.equal(rows[0]?.setting, `off${schema}`);
    other = new PostgresTokenRepository(otherDatabase);
    peers = await lockPeers(schema);
    ({ locker, lockerPid } = peers);
  });
  after(async () => {
    await Promise.all([peers?.end(), otherDatabase?.close()]);
    await store?.dispose();
  });

  const newWaiter = (pids: number[], known: number[] = []) => peers.newWaiter(pids, known);

  async function newUser(): Promise<string> {
    const now = Date.now();
    const id = newId("usr", now);
    await storage.users.insert(userRecord(id, now), null);
    return id;
  }

  let sequence = 0;
  function token(userId: string, fields: Partial<RefreshTokenRecord> = {}): RefreshTokenRecord {
    const now = Date.now();
    return refreshTokenRecord(userId, now, { familyId: `fam_batch_${++sequence}_${now}`, ...fields });
  }

  async function stored(...tokens: RefreshTokenRecord[]): Promise<void> {
    for (const t of tokens) await storage.tokens.insertRefresh(t, null);
  }

  function auditOf(requestId: string, action: string, detail: Record<string, unknown> | null): AuditEventInput {
    const outcome = action === "token.refresh" ? "success" : "failure";
    return auditEventInput({ actor: "user:test", action, outcome, requestId, detail });
  }

  /** Rotates `t` into a successor in its family; audits tagged with `tag`. */
  function rotate(
    repository: PostgresTokenRepository | PostgresStorage["tokens"],
    t: RefreshTokenRecord,
    tag: string,
    replacement: RefreshTokenRecord = token(t.userId, { familyId: t.familyId }),
  ): Promise<RefreshRotation & { replacement: RefreshTokenRecord }> {
    return repository
      .rotateRefresh({ id: t.id, digest: t.digest }, replacement, Date.now(), {
        rotated: auditOf(`${tag}:rotated`, "token.refresh", { family: t.familyId }),
        reused: auditOf(`${tag}:reused`, "token.refresh_reuse", { family: t.familyId }),
      })
      .then((rotation) => ({ ...rotation, replacement }));
  }

  async function familyRows(familyId: string) {
    const { rows } = await storage.database.query<{
      id: string;
      used_at: number | null;
      revoked_at: number | null;
      replaced_by: string | null;
    }>("SELECT id, used_at, revoked_at, replaced_by FROM refresh_tokens WHERE family_id = $1 ORDER BY id", [familyId]);
    return rows;
  }

  async function auditCount(requestIdLike: string): Promise<number> {
    const { rows } = await storage.database.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM audit_events WHERE request_id LIKE $1",
      [requestIdLike],
    );
    return rows[0]?.n ?? -1;
  }

  async function liveTokensOf(userId: string): Promise<string[]> {
    const { rows } = await storage.database.query<{ id: string }>(
      "SELECT id FROM refresh_tokens WHERE user_id = $1 AND used_at IS NULL AND revoked_at IS NULL",
      [userId],
    );
    return rows.map((row) => row.id);
  }

  test("one token asked for many times in one batch: one rotation, the rest reuse; one successor, and it is dead", async () => {
    const userId = await newUser();
    const t = token(userId);
    await stored(t);
    const tag = `same_${t.id}`;
    const rotations = await Promise.all(Array.from({ length: 20 }, (_, i) => rotate(storage.tokens, t, `${tag}:${i}`)));
    const winners = rotations.filter((r) => r.outcome === "rotated");
    assert.equal(winners.length, 1, rotations.map((r) => r.outcome).join(","));
    assert.equal(rotations.filter((r) => r.outcome === "reused").length, 19);
    const rows = await familyRows(t.familyId);
    assert.equal(rows.length, 2, "the token and one successor, no more");
    const successor = rows.find((row) => row.id !== t.id);
    assert.equal(successor?.id, winners[0]?.replacement.id);
    assert.equal(rows.find((row) => row.id === t.id)?.replaced_by, successor?.id);
    assert.ok(
      rows.every((row) => row.revoked_at !== null),
      "the family is revoked, the successor with it",
    );
    assert.equal(await auditCount(`${tag}:%:rotated`), 1);
    assert.equal(await auditCount(`${tag}:%:reused`), 19);
  });

  test("two nodes rotating the same tokens in opposite orders: one winner each, the loser is reuse, no error", async () => {
    const userId = await newUser();
    const tokens = Array.from({ length: 40 }, () => token(userId));
    await stored(...tokens);
    const tag = `nodes_${tokens[0]?.id}`;
    const [mine, theirs] = await Promise.all([
      Promise.all(tokens.map((t, i) => rotate(storage.tokens, t, `${tag}:a${i}`))),
      Promise.all([...tokens].reverse().map((t, i) => rotate(other, t, `${tag}:b${tokens.length - 1 - i}`))),
    ]);
    theirs.reverse();
    for (const [i, t] of tokens.entries()) {
      const outcomes = [mine[i]?.outcome, theirs[i]?.outcome].sort();
      assert.deepEqual(outcomes, ["reused", "rotated"], `token ${i}`);
      const rows = await familyRows(t.familyId);
      assert.equal(rows.length, 2, `token ${i}: one successor`);
      assert.ok(
        rows.every((row) => row.revoked_at !== null),
        `token ${i}: family revoked, successor included`,
      );
    }
    assert.equal(await auditCount(`${tag}:%:rotated`), tokens.length);
    assert.equal(await auditCount(`${tag}:%:reused`), tokens.length);
    assert.deepEqual(await liveTokensOf(userId), []);
  });

  test("a logout of everywhere while a batch spends two of the user's tokens: it revokes them all, no deadlock", async () => {
    const userId = await newUser();
    const bystander = await newUser();
    // Ids a < c < z: the batch takes them in that order. The user's revocation meets z first
    // (inserted first), then a.
    const base = `rtk_${Date.now()}`;
    const a = token(userId, { id: `${base}_a` });
    const c = token(bystander, { id: `${base}_c` });
    const z = token(userId, { id: `${base}_z` });
    await stored(z, a, c);
    await locker.query("BEGIN");
    try {
      await locker.query("SELECT 1 FROM refresh_tokens WHERE id = $1 FOR UPDATE", [c.id]);
      const batch = Promise.allSettled([rotate(other, a, "dl:a"), rotate(other, c, "dl:c"), rotate(other, z, "dl:z")]);
      const spender = await newWaiter([lockerPid]);
      const revocation = storage.sessions.revokeAllForUser(userId, Date.now(), null).then(
        () => null,
        (error: unknown) => error,
      );
      // Either the revocation finishes (nothing of the batch's in its way) or it queues
      // behind the batch; then the lock on c goes.
      await Promise.race([revocation, newWaiter([spender], [lockerPid])]);
      await locker.query("COMMIT");
      assert.equal(await revocation, null, "the revocation did not fail");
      const outcomes = await batch;
      assert.ok(
        outcomes.every((o) => o.status === "fulfilled"),
        "no rotation failed",
      );
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
    }
    assert.deepEqual(await liveTokensOf(userId), [], "nothing of the user's is live");
  });

  test("a batch meeting a revocation in flight: those tokens answer revoked with no successor, the rest rotate", async () => {
    const userId = await newUser();
    const others = await newUser();
    const revoked = [token(userId), token(userId)];
    const kept = [token(others), token(others)];
    await stored(...revoked, ...kept);
    await locker.query("BEGIN");
    try {
      // The revocation holds the user's rows (its statement is done) and has not committed.
      await locker.query("UPDATE refresh_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL", [
        Date.now(),
        userId,
      ]);
      const batch = Promise.all([...revoked, ...kept].map((t, i) => rotate(other, t, `inflight:${i}`)));
      await newWaiter([lockerPid]);
      await locker.query("COMMIT");
      const outcomes = (await batch).map((r) => r.outcome);
      assert.deepEqual(outcomes, ["revoked", "revoked", "rotated", "rotated"]);
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
    }
    assert.deepEqual(await liveTokensOf(userId), []);
    for (const t of revoked) assert.equal((await familyRows(t.familyId)).length, 1, "no successor");
    assert.equal((await liveTokensOf(others)).length, 2);
  });

  test("a family revoked while a batch that spends its token is between the spend and the commit: the successor dies too", async () => {
    const userId = await newUser();
    const bystander = await newUser();
    const t = token(userId);
    const b = token(bystander);
    await stored(t, b);
    await locker.query("BEGIN");
    try {
      // The batch's successor for `b` waits for the bystander's user row (its foreign key),
      // holding `t` spent and its successor written but not committed.
      await locker.query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", [bystander]);
      const batch = Promise.all([rotate(other, t, "hold:t"), rotate(other, b, "hold:b")]);
      const spender = await newWaiter([lockerPid]);
      const revocation = storage.tokens.revokeFamily(t.familyId, { at: Date.now(), denyJti: null }, null);
      await newWaiter([spender], [lockerPid]);
      await locker.query("COMMIT");
      assert.deepEqual(
        (await batch).map((r) => r.outcome),
        ["rotated", "rotated"],
      );
      assert.ok((await revocation) >= 2, "the token and the successor it did not see at first");
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
    }
    assert.deepEqual(await liveTokensOf(userId), []);
  });

  test("one bad rotation in a batch fails alone: a successor id taken, a NUL, two successors with one id", async () => {
    const userId = await newUser();
    const tokens = Array.from({ length: 6 }, () => token(userId));
    const existing = token(userId);
    await stored(...tokens, existing);
    const family = (i: number) => (tokens[i] as RefreshTokenRecord).familyId;
    const twin = token(userId, { familyId: family(4) });
    const replacements = [
      token(userId, { familyId: family(0), id: existing.id }), // id taken
      token(userId, { familyId: family(1), scope: "read\u0000write" }), // NUL in text
      token(userId, { familyId: family(2) }),
      token(userId, { familyId: family(3) }),
      twin,
      { ...twin, familyId: family(5), digest: digestOpaqueToken(newOpaqueToken()) }, // same id as twin
    ];
    const results = await Promise.allSettled(
      tokens.map((t, i) => rotate(storage.tokens, t, `bad_${existing.id}:${i}`, replacements[i])),
    );
    const status = results.map((r) => (r.status === "fulfilled" ? r.value.outcome : "failed"));
    assert.equal(status[0], "failed");
    assert.equal(status[1], "failed");
    assert.deepEqual(status.slice(2, 4), ["rotated", "rotated"]);
    assert.deepEqual(status.slice(4).sort(), ["failed", "rotated"], "one of two successors with one id");
    for (const r of results) {
      if (r.status === "rejected") assert.ok(!(r.reason instanceof StorageUnavailableError), String(r.reason));
    }
    for (const [i, t] of tokens.entries()) {
      const found = await storage.tokens.findRefresh({ id: t.id, digest: t.digest });
      assert.equal(found?.usedAt === null, status[i] === "failed", `token ${i}: spent only if it rotated`);
      assert.equal(found?.revokedAt, null);
      assert.equal(await auditCount(`bad_${existing.id}:${i}:%`), status[i] === "rotated" ? 1 : 0, `audit ${i}`);
    }
  });

  test("a rotation asked alone after its batch fails alone: the batch's own spends stand", async () => {
    const userId = await newUser();
    const spent = token(userId);
    const busy = token(userId);
    const existing = token(userId);
    await stored(spent, busy, existing);
    await locker.query("BEGIN");
    try {
      // `busy` is held, so the batch leaves it to be asked alone; alone, its successor's id is taken.
      await locker.query("SELECT 1 FROM refresh_tokens WHERE id = $1 FOR UPDATE", [busy.id]);
      const batch = Promise.allSettled([
        rotate(other, spent, "alone:spent"),
        rotate(other, busy, "alone:busy", token(userId, { familyId: busy.familyId, id: existing.id })),
      ]);
      await newWaiter([lockerPid]);
      await locker.query("COMMIT");
      const [first, second] = await batch;
      assert.equal(first?.status === "fulfilled" && first.value.outcome, "rotated");
      assert.equal(second?.status, "rejected");
    } finally {
      await locker.query("ROLLBACK").catch(() => {});
    }
    assert.equal(await storage.tokens.isFamilyRevoked(spent.familyId), false, "not asked again as a reuse");
    assert.equal((await storage.tokens.findRefresh({ id: busy.id, digest: busy.digest }))?.usedAt, null);
    assert.equal(await auditCount("alone:%"), 1);
  });

  test("the database gone: every rotation of the batch is StorageUnavailableError, and nothing was spent", async () => {
    const userId = await newUser();
    const tokens = Array.from({ length: 5 }, () => token(userId));
    await stored(...tokens);
    const gone = new PostgresDatabase("postgres://postgres@127.0.0.1:9/test", { schema: storage.database.schema });
    try {
      const results = await Promise.allSettled(
        tokens.map((t, i) => rotate(new PostgresTokenRepository(gone), t, `gone:${i}`)),
      );
      for (const r of results) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof StorageUnavailableError, String(r.reason));
      }
    } finally {
      await gone.close();
    }
    // A batch whose connection dies while it waits: the same for all, and rolled back.
    const bystander = await newUser();
    const held = token(bystander);
    await stored(held);
    await locker.query("BEGIN");
    try {
      await locker.query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", [bystander]);
      const batch = Promise.allSettled([...tokens, held].map((t, i) => rotate(other, t, `killed:${i}`)));
      const spender = await newWaiter([lockerPid]);
      await peers.watcher.query("SELECT pg_terminate_backend($1)", [spender]);
      for (const r of await batch) {
        assert.equal(r.status, "rejected");
        assert.ok(r.reason instanceof StorageUnavailableError, String(r.reason));
      }
    } finally {
      await locker.query("ROLLBACK");
    }
    for (const t of [...tokens, held]) {
      assert.equal((await storage.tokens.findRefresh({ id: t.id, digest: t.digest }))?.usedAt, null);
    }
    assert.equal(await auditCount("killed:%"), 0);
  });

  test("values arrive as written: bigints near 2^53, long and odd text, bytea digests, nulls, audit details", async () => {
    const userId = await newUser();
    const big = Number.MAX_SAFE_INTEGER;
    const odd = `"quoted", {braced}, back\\slash, 'single', NULL, ∅ 日本語 🎉 ${"x".repeat(20_000)}`;
    const digests = [Buffer.alloc(32, 0), Buffer.alloc(32, 0xff), Buffer.from(`\\x"{},NULL${"\u0000".repeat(22)}`)];
    const tokens = digests.map((digest, i) => token(userId, { digest, familyId: `fam_values_${i}_${Date.now()}` }));
    await stored(...tokens);
    const details: Array<Record<string, unknown> | null> = [
      { nested: { deeper: [1, "two", { three: null }] }, unicode: "ünï 🎉", quotes: `"'\\`, comma: "a,b" },
      null,
      { text: "NULL", empty: "", braces: "{}", newline: "a\nb" },
    ];
    const replacements = tokens.map((t, i) =>
      token(userId, {
        familyId: t.familyId,
        digest: Buffer.concat([digests[(i + 1) % digests.length] as Buffer, Buffer.from([i])]),
        clientId: i === 0 ? "" : odd,
        scope: i === 2 ? "" : odd,
        createdAt: big - 2,
        familyExpiresAt: big,
        expiresAt: big - 1,
      }),
    );
    const at = big - 3;
    const outcomes = await Promise.all(
      tokens.map((t, i) =>
        storage.tokens.rotateRefresh({ id: t.id, digest: t.digest }, replacements[i] as RefreshTokenRecord, at, {
          rotated: { ...auditOf(`values_${t.id}`, "token.refresh", details[i] ?? null), at, ip: odd, userAgent: null },
          reused: null,
        }),
      ),
    );
    assert.deepEqual(
      outcomes.map((o) => o.outcome),
      ["rotated", "rotated", "rotated"],
    );
    for (const [i, t] of tokens.entries()) {
      const replacement = replacements[i] as RefreshTokenRecord;
      const spent = await storage.tokens.findRefresh({ id: t.id, digest: t.digest });
      assert.equal(spent?.usedAt, at);
      assert.equal(spent?.replacedBy, replacement.id);
      const successor = await storage.tokens.findRefresh({ id: replacement.id, digest: replacement.digest });
      assert.deepEqual(successor, replacement);
      const { rows } = await storage.database.query<{ at: number; detail: unknown; ip: string; user_agent: null }>(
        "SELECT at, detail, ip, user_agent FROM audit_events WHERE request_id = $1",
        [`values_${t.id}`],
      );
      assert.equal(rows.length, 1);
      assert.deepEqual(rows[0], { at, detail: details[i], ip: odd, user_agent: null });
    }
  });
});
