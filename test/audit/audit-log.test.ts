import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ANONYMOUS_FAILURES_PER_MINUTE, AuditLog } from "../../src/audit/audit-log.ts";
import type { AuditEventInput } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";

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
