import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ANONYMOUS_FAILURES_PER_MINUTE, AuditLog } from "../../src/audit/audit-log.ts";
import type { AuditEventInput } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";

const T0 = Date.UTC(2026, 11, 7, 12, 0, 0);

function failure(actor: string, ip: string, action: string, at: number): AuditEventInput {
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
  };
}

for (const backend of backends()) {
  describe(`audit log (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("an address's anonymous failures past the minute's allowance are counted in one event, not written each", async () => {
      let now = T0;
      const audit = new AuditLog(store.storage, { intervalMs: 0, clock: () => now });
      const flood = "198.51.100.7";
      const quiet = "198.51.100.8";
      for (let i = 0; i < ANONYMOUS_FAILURES_PER_MINUTE + 40; i++) {
        audit.record(failure("anonymous", flood, i % 2 ? "token.refresh" : "auth.access_token", T0 + i));
        // A resource server's failed verifications are never held back: it is authenticated.
        audit.record(failure("key:key_resourceserver", flood, "key.verify", T0 + i));
      }
      for (let i = 0; i < 5; i++) audit.record(failure("anonymous", quiet, "token.refresh", T0 + i));
      await audit.flush();
      const written = async (query: { actor?: string; action?: string }) =>
        store.storage.audit.query({ ...query, since: T0 - 1, limit: 1000 });
      // Within the minute: the allowance written, nothing summed up yet.
      assert.equal((await written({ actor: "anonymous" })).length, ANONYMOUS_FAILURES_PER_MINUTE + 5);
      assert.equal((await written({ action: "audit.suppressed" })).length, 0);
      assert.equal((await written({ actor: "key:key_resourceserver" })).length, ANONYMOUS_FAILURES_PER_MINUTE + 40);

      // The minute ends: one event says how many were not written, and of what.
      now = T0 + 60_000;
      await audit.flush();
      const [summary, ...more] = await written({ action: "audit.suppressed" });
      assert.equal(more.length, 0, "one summary, for the flooding address only");
      assert.equal(summary?.ip, flood);
      assert.equal(summary?.outcome, "failure");
      assert.deepEqual(summary?.detail, {
        minute: new Date(T0).toISOString(),
        events: 40,
        byAction: { "token.refresh": 20, "auth.access_token": 20 },
        written: ANONYMOUS_FAILURES_PER_MINUTE,
      });

      // A new minute, a new allowance; what is still counted when the log stops is summed up.
      for (let i = 0; i < ANONYMOUS_FAILURES_PER_MINUTE + 3; i++) {
        audit.record(failure("anonymous", flood, "auth.credential_in_url", now + i));
      }
      await audit.stop();
      const summaries = await written({ action: "audit.suppressed" });
      assert.equal(summaries.length, 2);
      assert.equal((summaries[0]?.detail as { events?: number } | undefined)?.events, 3, "newest first");
    });
  });
}
