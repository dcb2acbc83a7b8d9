import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { newId } from "../../src/lib/ids.ts";
import type { RefreshTokenRecord, RefreshTokenRef } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken } from "../../src/tokens/opaque-token.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { userRecord } from "../support/records.ts";

const NO_AUDIT = { rotated: null, reused: null };

const activeUser = userRecord;

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

    function token(familyId: string, overrides: Partial<RefreshTokenRecord> = {}): RefreshTokenRecord {
      const now = Date.now();
      return {
        id: newId("rtk", now),
        digest: digestOpaqueToken(newOpaqueToken()),
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
        ...overrides,
      };
    }
    const ref = (t: RefreshTokenRecord): RefreshTokenRef => ({ id: t.id, digest: t.digest });

    test("many concurrent rotations of different tokens all succeed", async () => {
      const tokens = Array.from({ length: 300 }, (_, i) => token(`fam_many_${i}`));
      for (const t of tokens) await store.storage.tokens.insertRefresh(t, null);
      const outcomes = await Promise.all(
        tokens.map((t) => store.storage.tokens.rotateRefresh(ref(t), token(t.familyId), Date.now(), NO_AUDIT)),
      );
      assert.ok(outcomes.every((o) => o.outcome === "rotated"));
    });

    test("one failing rotation does not undo the others committed with it", async () => {
      const a = token("fam_a");
      const b = token("fam_b");
      const c = token("fam_c");
      for (const t of [a, b, c]) await store.storage.tokens.insertRefresh(t, null);
      // b's replacement reuses c's id: a primary-key violation, for b alone.
      const results = await Promise.allSettled([
        store.storage.tokens.rotateRefresh(ref(a), token("fam_a"), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(ref(b), token("fam_b", { id: c.id }), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(ref(c), token("fam_c"), Date.now(), NO_AUDIT),
      ]);
      assert.deepEqual(
        results.map((r) => r.status),
        ["fulfilled", "rejected", "fulfilled"],
      );
      assert.ok((await store.storage.tokens.findRefresh(ref(a)))?.usedAt);
      assert.equal((await store.storage.tokens.findRefresh(ref(b)))?.usedAt, null, "b's spend rolled back");
      assert.ok((await store.storage.tokens.findRefresh(ref(c)))?.usedAt);
    });

    test("the same token twice at once: one rotates, the other revokes the family", async () => {
      const t = token("fam_twice");
      await store.storage.tokens.insertRefresh(t, null);
      const outcomes = await Promise.all([
        store.storage.tokens.rotateRefresh(ref(t), token("fam_twice"), Date.now(), NO_AUDIT),
        store.storage.tokens.rotateRefresh(ref(t), token("fam_twice"), Date.now(), NO_AUDIT),
      ]);
      // Which one wins is up to the backend (SQLite: arrival order; PostgreSQL: row lock).
      assert.deepEqual(outcomes.map((o) => o.outcome).sort(), ["reused", "rotated"]);
      assert.equal(await store.storage.tokens.isFamilyRevoked("fam_twice"), true);
    });

    test("a token revoked after it was read (a logout racing the refresh) is 'revoked', not a reuse", async () => {
      const t = token("fam_logout_race");
      await store.storage.tokens.insertRefresh(t, null);
      // The refresh read the token as good; the logout lands before its conditional write.
      await store.storage.tokens.revokeFamily("fam_logout_race", { at: Date.now(), denyJti: null }, null);
      const reuse = {
        at: Date.now(),
        actor: "anonymous",
        action: "token.refresh_reuse",
        targetType: "user",
        targetId: userId,
        outcome: "failure" as const,
        ip: null,
        userAgent: null,
        requestId: "req-logout-race",
        detail: { probableTheft: true },
      };
      const outcome = await store.storage.tokens.rotateRefresh(ref(t), token("fam_logout_race"), Date.now(), {
        rotated: null,
        reused: reuse,
      });
      assert.equal(outcome.outcome, "revoked");
      const events = await store.storage.audit.query({ action: "token.refresh_reuse", targetId: userId, limit: 100 });
      assert.ok(!events.some((event) => event.requestId === "req-logout-race"), "no theft recorded");
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
        store.storage.tokens.rotateRefresh(ref(a), token("fam_audit_a"), Date.now(), audits("req-audit-a")),
        // b's replacement reuses a's id: its rotation fails, and its audit event goes with it.
        store.storage.tokens.rotateRefresh(
          ref(b),
          token("fam_audit_b", { id: a.id }),
          Date.now(),
          audits("req-audit-b"),
        ),
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
      const found = await store.storage.tokens.findRefreshForRotation(ref(t));
      assert.deepEqual(found, {
        record: await store.storage.tokens.findRefresh(ref(t)),
        userActive: true,
        userScopes: [],
      });
      assert.equal(await store.storage.tokens.findRefreshForRotation(ref(token("fam_never_stored"))), null);
      // The right id with another secret's digest finds nothing either.
      const forged = { id: t.id, digest: digestOpaqueToken(newOpaqueToken()) };
      assert.equal(await store.storage.tokens.findRefreshForRotation(forged), null);
      assert.equal(await store.storage.tokens.findRefresh(forged), null);
      assert.equal(
        (await store.storage.tokens.rotateRefresh(forged, token("fam_read"), Date.now(), NO_AUDIT)).outcome,
        "unknown",
      );
    });

    test("an unknown token is reported as unknown", async () => {
      const outcome = await store.storage.tokens.rotateRefresh(
        ref(token("fam_never_stored")),
        token("fam_x"),
        Date.now(),
        NO_AUDIT,
      );
      assert.equal(outcome.outcome, "unknown");
    });

    test("findRefreshForRotation reads the user's scopes as they are, not the family's", async () => {
      const now = Date.now();
      const scopedId = newId("usr", now);
      await store.storage.users.insert(activeUser(scopedId, now, { scopes: ["payments:read", "a:b"] }), null);
      const t = { ...token("fam_scoped"), userId: scopedId, scope: "payments:write" };
      await store.storage.tokens.insertRefresh(t, null);
      const found = await store.storage.tokens.findRefreshForRotation(ref(t));
      assert.equal(found?.record.scope, "payments:write");
      assert.deepEqual(found?.userScopes, ["payments:read", "a:b"]);
    });

    test("findRefreshForRotation: a disabled user's token reads as not active", async () => {
      const now = Date.now();
      const otherId = newId("usr", now);
      await store.storage.users.insert(activeUser(otherId, now), null);
      const t = { ...token("fam_disabled"), userId: otherId };
      await store.storage.tokens.insertRefresh(t, null);
      assert.equal((await store.storage.tokens.findRefreshForRotation(ref(t)))?.userActive, true);
      await store.storage.users.disable(otherId, Date.now(), null);
      assert.equal((await store.storage.tokens.findRefreshForRotation(ref(t)))?.userActive, false);
    });
  });
}
