import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { Housekeeper } from "../../src/housekeeping/housekeeper.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { newId } from "../../src/lib/ids.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { AuditEventInput, RefreshTokenRecord, SessionRecord, Storage } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { auditEventInput, keyRecord, userRecord } from "../support/records.ts";

/** What a pass that finds nothing to do reports. */
const NOTHING_LEFT = {
  ended_keys: 0,
  usage: 0,
  usage_hours: 0,
  audit: 0,
  refresh_tokens: 0,
  legacy_token_digests: 0,
  denied_access_tokens: 0,
  sessions: 0,
  usageRolledUp: 0,
};

const DAY = 86_400_000;

const key = keyRecord;

const audit = (at: number): AuditEventInput => auditEventInput({ at, actor: "cli", action: "x", targetType: null });

for (const backend of backends()) {
  describe(`housekeeping (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("purges what outlived its retention, in batches, and keeps the rest", async () => {
      const clock = manualClock(Date.UTC(2027, 0, 1));
      const now = clock();
      const { storage } = store;
      const endedLongAgo = [
        key(now - 200 * DAY, { expiresAt: now - 100 * DAY }),
        key(now - 200 * DAY, { expiresAt: now - 40 * DAY }),
        key(now - 10 * DAY, { revokedAt: now - 31 * DAY, revokedReason: "x" }),
      ];
      const kept = [
        key(now - 10 * DAY, {}),
        key(now - 100 * DAY, { expiresAt: now - 29 * DAY }),
        key(now - 10 * DAY, { revokedAt: now - 1 * DAY, revokedReason: "x" }),
        key(now, { expiresAt: null }),
      ];
      await storage.keys.insertMany([...endedLongAgo, ...kept]);
      const liveId = kept[0]?.id ?? "";
      const minute = 60_000;
      await storage.usage.add([
        { keyId: liveId, bucket: now - 91 * DAY, outcome: "VALID", count: 1 },
        { keyId: liveId, bucket: now - 95 * DAY, outcome: "VALID", count: 1 },
        { keyId: liveId, bucket: now - 89 * DAY, outcome: "VALID", count: 7 },
        // Within the minute retention (7 days), kept per minute.
        { keyId: liveId, bucket: now - 6 * DAY, outcome: "VALID", count: 3 },
        { keyId: liveId, bucket: now - 6 * DAY + minute, outcome: "VALID", count: 4 },
      ]);
      await storage.audit.append([audit(now - 400 * DAY), audit(now - 366 * DAY), audit(now - 364 * DAY), audit(now)]);

      const housekeeper = new Housekeeper({ storage, clock, batchSize: 2 });
      const deleted = await housekeeper.runOnce();
      // Minutes past the usage retention are purged as minutes (two); the one past 7 days
      // but within 90 is summed into its hour.
      assert.deepEqual(deleted, { ...NOTHING_LEFT, ended_keys: 3, usage: 2, audit: 2, usageRolledUp: 1 });
      for (const k of endedLongAgo) assert.equal(await storage.keys.findById(k.id), null);
      for (const k of kept) assert.ok(await storage.keys.findById(k.id), k.id);
      assert.deepEqual(
        (await storage.usage.read(liveId, 0, now)).map((r) => [now - r.bucket, r.count]),
        [
          [89 * DAY, 7],
          [6 * DAY, 3],
          [6 * DAY - minute, 4],
        ],
      );
      assert.equal((await storage.audit.query({ limit: 10 })).length, 2);
      // A second pass finds nothing more.
      assert.deepEqual(await housekeeper.runOnce(), NOTHING_LEFT);
    });

    test("stop waits for a pass in flight, which ends after its current batch", async () => {
      const clock = manualClock(Date.UTC(2027, 6, 1));
      const now = clock();
      const { storage } = store;
      await storage.audit.append(Array.from({ length: 40 }, () => audit(now - 400 * DAY)));
      const housekeeper = new Housekeeper({ storage, clock, batchSize: 2 });
      let settled = false;
      const pass = housekeeper.runOnce().then((deleted) => {
        settled = true;
        return deleted;
      });
      await housekeeper.stop();
      // Storage may be closed from here on: nothing of the pass is still running.
      assert.equal(settled, true);
      const deleted = await pass;
      assert.ok(deleted.audit < 40, `the pass stopped early (deleted ${deleted.audit})`);
      // Stopped for good: a later pass deletes nothing.
      assert.deepEqual(await housekeeper.runOnce(), NOTHING_LEFT);
    });
  });
}

const MINUTE = 60_000;

function refreshToken(userId: string, now: number, fields: Partial<RefreshTokenRecord>): RefreshTokenRecord {
  return {
    id: newId("rtk", now),
    digest: randomBytes(32),
    familyId: `fam_${randomBytes(6).toString("hex")}`,
    userId,
    clientId: "gatehouse",
    scope: "",
    createdAt: now - DAY,
    familyExpiresAt: now + DAY,
    expiresAt: now + DAY,
    usedAt: null,
    replacedBy: null,
    revokedAt: null,
    ...fields,
  };
}

function session(userId: string, now: number, fields: Partial<SessionRecord>): SessionRecord {
  return {
    id: newId("ses", now),
    digest: randomBytes(32),
    userId,
    createdAt: now - DAY,
    lastSeenAt: now - DAY,
    expiresAt: now + DAY,
    idleExpiresAt: now + DAY,
    revokedAt: null,
    ip: null,
    userAgent: null,
    ...fields,
  };
}

/** Digests of refresh tokens from before migration 5: no API writes them any more. */
async function insertLegacyDigest(storage: Storage, id: string): Promise<void> {
  const sql = "INSERT INTO refresh_token_legacy_digests (digest, id) VALUES";
  if (storage instanceof SqliteStorage) storage.database.db.prepare(`${sql} (?, ?)`).run(randomBytes(32), id);
  else if (storage instanceof PostgresStorage) await storage.database.query(`${sql} ($1, $2)`, [randomBytes(32), id]);
}

async function legacyDigestIds(storage: Storage): Promise<string[]> {
  const sql = "SELECT id FROM refresh_token_legacy_digests ORDER BY id";
  const rows =
    storage instanceof SqliteStorage
      ? storage.database.db.prepare(sql).all()
      : storage instanceof PostgresStorage
        ? (await storage.database.query(sql)).rows
        : [];
  return rows.map((row) => String(row.id));
}

for (const backend of backends()) {
  describe(`housekeeping prunes spent credentials (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("refresh tokens, legacy digests, denylist entries and sessions past their end go in batches; live ones stay", async () => {
      const clock = manualClock(Date.UTC(2027, 2, 1));
      const now = clock();
      const { storage } = store;
      const user = userRecord(newId("usr", now), now);
      assert.equal(await storage.users.insert(user, null), true);
      const batch = 4;
      const many = 3 * batch + 1;

      // Tokens go when their family has ended, whatever else holds.
      const spentTokens = Array.from({ length: many }, (_, i) =>
        refreshToken(user.id, now, { familyExpiresAt: now - 1 - i * MINUTE, expiresAt: now - 1 - i * MINUTE }),
      );
      const liveTokens = [
        refreshToken(user.id, now, {}),
        refreshToken(user.id, now, { familyExpiresAt: now }),
        // Past its idle end, used and revoked, but its family has not ended: kept, as before.
        refreshToken(user.id, now, { expiresAt: now - DAY, usedAt: now - DAY, revokedAt: now - DAY }),
      ];
      for (const token of [...spentTokens, ...liveTokens]) await storage.tokens.insertRefresh(token, null);

      // Legacy digests go once their token has: pruned here, or never there.
      for (const token of spentTokens.slice(0, batch + 1)) await insertLegacyDigest(storage, token.id);
      const liveLegacy = liveTokens[0]?.id ?? "";
      await insertLegacyDigest(storage, liveLegacy);

      // Denylist entries go once the access token they deny has expired.
      for (let i = 0; i < many; i++) {
        await storage.tokens.revokeFamily(
          `fam_deny_${i}`,
          { at: now - DAY, denyJti: { jti: `jti_spent_${i}`, expiresAt: now - 1 - i } },
          null,
        );
      }
      await storage.tokens.revokeFamily(
        "fam_deny_live",
        { at: now, denyJti: { jti: "jti_live", expiresAt: now } },
        null,
      );

      // Sessions go past their absolute end or their idle end.
      const spentSessions = Array.from({ length: many }, (_, i) =>
        i % 2 === 0
          ? session(user.id, now, { expiresAt: now - 1 - i, idleExpiresAt: now - 1 - i })
          : session(user.id, now, { idleExpiresAt: now - 1 - i }),
      );
      const liveSessions = [
        session(user.id, now, {}),
        session(user.id, now, { expiresAt: now, idleExpiresAt: now }),
        session(user.id, now, { revokedAt: now - DAY }),
      ];
      for (const s of [...spentSessions, ...liveSessions]) await storage.sessions.insert(s, null, null);

      // No grace here (its own test follows): the rows past their end, exactly.
      const housekeeper = new Housekeeper({ storage, clock, batchSize: batch, credentialGraceMs: 0 });
      assert.deepEqual(await housekeeper.runOnce(), {
        ...NOTHING_LEFT,
        refresh_tokens: many,
        legacy_token_digests: batch + 1,
        denied_access_tokens: many,
        sessions: many,
      });
      for (const token of spentTokens) assert.equal(await storage.tokens.findRefresh(token), null);
      for (const token of liveTokens) assert.ok(await storage.tokens.findRefresh(token), token.id);
      assert.deepEqual(await legacyDigestIds(storage), [liveLegacy]);
      for (let i = 0; i < many; i++) assert.equal(await storage.tokens.isJtiDenied(`jti_spent_${i}`), false);
      assert.equal(await storage.tokens.isJtiDenied("jti_live"), true);
      for (const s of spentSessions) assert.equal(await storage.sessions.findByDigest(s.digest), null);
      for (const s of liveSessions) assert.ok(await storage.sessions.findByDigest(s.digest), s.id);
      assert.deepEqual(await housekeeper.runOnce(), NOTHING_LEFT);
    });

    // Regression: a family's rows and denylist entries went the moment they ended, while an
    // access token signed near the family's end (or denied at logout) was still judged by
    // them: its revocation was forgotten for the rest of its life.
    test("a family's tokens and denylist entries outlive their end by the grace, then go", async () => {
      const clock = manualClock(Date.UTC(2027, 3, 1));
      const now = clock();
      const { storage } = store;
      const user = userRecord(newId("usr", now), now);
      assert.equal(await storage.users.insert(user, null), true);
      const token = refreshToken(user.id, now, { familyExpiresAt: now - MINUTE, expiresAt: now - MINUTE });
      await storage.tokens.insertRefresh(token, null);
      await storage.tokens.revokeFamily(
        token.familyId,
        { at: now - 2 * MINUTE, denyJti: { jti: "jti_grace", expiresAt: now - MINUTE } },
        null,
      );
      const housekeeper = new Housekeeper({ storage, clock, credentialGraceMs: 20 * MINUTE });
      await housekeeper.runOnce();
      assert.ok(await storage.tokens.findRefresh(token), "kept within the grace");
      assert.equal(await storage.tokens.isFamilyRevoked(token.familyId), true);
      assert.equal(await storage.tokens.isJtiDenied("jti_grace"), true);
      clock.advance(20 * MINUTE);
      await housekeeper.runOnce();
      assert.equal(await storage.tokens.findRefresh(token), null);
      assert.equal(await storage.tokens.isJtiDenied("jti_grace"), false);
    });
  });
}
