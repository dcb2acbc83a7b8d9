import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Housekeeper } from "../../src/housekeeping/housekeeper.ts";
import { manualClock } from "../../src/lib/clock.ts";
import type { AuditEventInput } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

/** What a pass that finds nothing to do reports. */
const NOTHING_LEFT = { ended_keys: 0, usage: 0, usage_hours: 0, audit: 0, usageRolledUp: 0 };

const DAY = 86_400_000;

const key = keyRecord;

const audit = (at: number): AuditEventInput => ({
  at,
  actor: "cli",
  action: "x",
  targetType: null,
  targetId: null,
  outcome: "success",
  ip: null,
  userAgent: null,
  requestId: null,
  detail: null,
});

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
      assert.deepEqual(deleted, { ended_keys: 3, usage: 2, usage_hours: 0, audit: 2, usageRolledUp: 1 });
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
