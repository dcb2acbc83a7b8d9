import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { newId } from "../../src/lib/ids.ts";
import type { RefreshTokenRecord, UserRecord } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken } from "../../src/tokens/opaque-token.ts";
import { backends, type TestStore } from "../support/backends.ts";

const NO_AUDIT = { rotated: null, reused: null };

/** An active user row with a placeholder hash (no sign-in happens here). */
function activeUser(id: string, now: number): UserRecord {
  return {
    id,
    email: `${randomBytes(4).toString("hex")}@example.com`,
    passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    scopes: [],
    status: "active",
    createdAt: now,
    updatedAt: now,
    disabledAt: null,
    passwordChangedAt: now,
  };
}

for (const backend of backends()) {
  describe(`refresh token storage contract (${backend.name})`, () => {
    let store: TestStore;
    let userId: string;
    before(async () => {
      store = await backend.create();
      const now = Date.now();
      userId = newId("usr", now);
      await store.storage.users.insert(activeUser(userId, now), null);
    });
    after(() => store.dispose());

    function token(familyId: string, digest = digestOpaqueToken(newOpaqueToken())): RefreshTokenRecord {
      const now = Date.now();
      return {
        id: newId("rtk", now),
        digest,
        familyId,
        userId,
        clientId: "test",
        scope: "",
        createdAt: now,
        familyExpiresAt: now + 3_600_000,
        expiresAt: now + 3_600_000,
        usedAt: null,
        replacedBy: null,
        revokedAt: null,
      };
    }

    test("many concurrent rotations of different tokens all succeed", async () => {
      const tokens = Array.from({ length: 300 }, (_, i) => token(`fam_many_${i}`));
      for (const t of tokens) await store.storage.tokens.insertRefresh(t, null);
      const outcomes = await Promise.all(
        tokens.map((t) => store.storage.tokens.rotateRefresh(t.digest, token(t.familyId), Date.now(), NO_AUDIT)),
      );
      assert.ok(outcomes.every((o) => o.outcome === "rotated"));
    });

    test("one failing rotation does not undo the others committed with it", async () => {
      const a = token("fam_a");
      const b = token("fam_b");
      const c = token("fam_c");
      for (const t of [a, b, c]) await store.storage.tokens.insertRefresh(t, null);
      // b's replacement reuses c's digest: a unique-key violation, for b alone.
      const results = await Promise.allSettled([
        store.storage.tokens.rotateRefresh(a.digest, token("fam_a"), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(b.digest, token("fam_b", c.digest), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(c.digest, token("fam_c"), Date.now(), NO_AUDIT),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected", "fulfilled"],
      );
      assert.ok((await store.storage.tokens.findRefreshByDigest(a.digest))?.usedAt);
      assert.equal((await store.storage.tokens.findRefreshByDigest(b.digest))?.usedAt, null, "b's spend rolled back");
      assert.ok((await store.storage.tokens.findRefreshByDigest(c.digest))?.usedAt);
    });

    test("the same token twice at once: one rotates, the other revokes the family", async () => {
      const t = token("fam_twice");
      await store.storage.tokens.insertRefresh(t, null);
      const outcomes = await Promise.all([
        store.storage.tokens.rotateRefresh(t.digest, token("fam_twice"), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(t.digest, token("fam_twice"), Date.now(), NO_AUDIT),
      ]);
      // Which one wins is up to the backend (SQLite: arrival order; PostgreSQL: row lock).
      assert.deepEqual(outcomes.map((o) => o.outcome).sort(), ["reused", "rotated"]);
      assert.equal(await store.storage.tokens.isFamilyRevoked("fam_twice"), true);
    });

    test("a rotation's audit event is committed with it; a failed rotation leaves none", async () => {
      const a = token("fam_audit_a");
      const b = token("fam_audit_b");
      for (const t of [a, b]) await store.storage.tokens.insertRefresh(t, null);
      const audits = (requestId: string) => ({
        rotated: {
          at: Date.now(),
          actor: "anonymous",
          action: "token.refresh",
          targetType: "user",
          targetId: userId,
          outcome: "success" as const,
          ip: null,
          userAgent: null,
          requestId,
          detail: null,
        },
        reused: null,
      });
      const results = await Promise.allSettled([
        store.storage.tokens.rotateRefresh(a.digest, token("fam_audit_a"), Date.now(), audits("req-audit-a")),
        // b's replacement reuses a's digest: its rotation fails, and its audit event goes with it.
        store.storage.tokens.rotateRefresh(b.digest, token("fam_audit_b", a.digest), Date.now(), audits("req-audit-b")),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected"],
      );
      const events = await store.storage.audit.query({ action: "token.refresh", targetId: userId, limit: 100 });
      const requestIds = events.map((event) => event.requestId);
      assert.ok(requestIds.includes("req-audit-a"));
      assert.ok(!requestIds.includes("req-audit-b"));
    });

    test("findRefreshForRotation reads the token with its user's status", async () => {
      const t = token("fam_read");
      await store.storage.tokens.insertRefresh(t, null);
      const found = await store.storage.tokens.findRefreshForRotation(t.digest);
      assert.deepEqual(found, { record: await store.storage.tokens.findRefreshByDigest(t.digest), userActive: true });
      assert.equal(await store.storage.tokens.findRefreshForRotation(digestOpaqueToken(newOpaqueToken())), null);
    });

    test("an unknown token is reported as unknown", async () => {
      const outcome = await store.storage.tokens.rotateRefresh(
        digestOpaqueToken(newOpaqueToken()),
        token("fam_x"),
        Date.now(),
        NO_AUDIT,
      );
      assert.equal(outcome.outcome, "unknown");
    });

    test("findRefreshForRotation: a disabled user's token reads as not active", async () => {
      const now = Date.now();
      const otherId = newId("usr", now);
      await store.storage.users.insert(activeUser(otherId, now), null);
      const t = { ...token("fam_disabled"), userId: otherId };
      await store.storage.tokens.insertRefresh(t, null);
      assert.equal((await store.storage.tokens.findRefreshForRotation(t.digest))?.userActive, true);
      await store.storage.users.disable(otherId, Date.now(), null);
      assert.equal((await store.storage.tokens.findRefreshForRotation(t.digest))?.userActive, false);
    });
  });
}
