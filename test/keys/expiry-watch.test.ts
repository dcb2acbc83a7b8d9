import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { KeyExpiryWatch } from "../../src/keys/expiry-watch.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

const DAY = 86_400_000;

for (const backend of backends()) {
  describe(`keys that call Gatehouse are warned about before they expire (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("named once a day while within 14 days; scope-only, revoked, rotated and distant keys are not", async () => {
      const clock = manualClock(Date.UTC(2026, 5, 1));
      const now = clock();
      const created = now - 80 * DAY;
      const soon = keyRecord(created, { name: "verifier", permissions: ["keys:verify"], expiresAt: now + 3 * DAY });
      const admin = keyRecord(created, { name: "admin", permissions: ["keys:write"], expiresAt: now + 13 * DAY });
      const scopesOnly = keyRecord(created, { scopes: ["payments:read"], expiresAt: now + 3 * DAY });
      const distant = keyRecord(created, { permissions: ["keys:read"], expiresAt: now + 30 * DAY });
      const revoked = keyRecord(created, {
        permissions: ["keys:read"],
        expiresAt: now + 3 * DAY,
        revokedAt: now - DAY,
      });
      const rotated = keyRecord(created, { permissions: ["keys:read"], expiresAt: now + DAY, replacedBy: "key_x" });
      const expired = keyRecord(created, { permissions: ["keys:read"], expiresAt: now - DAY });
      // More scope-only keys expiring before the admin key than one check reads: they must
      // not hide it (they did when the permissions were checked after the limit).
      const crowd = Array.from({ length: 150 }, () =>
        keyRecord(created, { scopes: ["payments:read"], expiresAt: now + 4 * DAY }),
      );
      await store.storage.keys.insertMany([soon, admin, scopesOnly, distant, revoked, rotated, expired, ...crowd]);

      const lines: Array<Record<string, unknown>> = [];
      const log = pino({ level: "warn" }, { write: (line: string) => lines.push(JSON.parse(line)) });
      const watch = new KeyExpiryWatch({ storage: store.storage, clock, log });

      assert.deepEqual(
        (await watch.check()).map((k) => k.id),
        [soon.id, admin.id],
      );
      assert.deepEqual(
        lines.map((l) => l.keyId),
        [soon.id, admin.id],
      );
      assert.match(String(lines[0]?.msg), /expires in 3 day\(s\): rotate it \(POST \/v1\/keys\/key_\w+\/rotate/);
      assert.equal(lines[0]?.hint, soon.hint);

      // Not again within the day; again the next day, for the keys still due.
      assert.deepEqual(await watch.check(), []);
      clock.advance(DAY);
      assert.deepEqual(
        (await watch.check()).map((k) => k.id),
        [soon.id, admin.id],
      );
      // Past its end a key is not "expiring" any more.
      clock.advance(3 * DAY);
      assert.deepEqual(
        (await watch.check()).map((k) => k.id),
        [admin.id],
      );
    });
  });
}
