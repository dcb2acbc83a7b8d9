import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Housekeeper } from "../../src/housekeeping/housekeeper.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import type { UsageIncrement } from "../../src/storage/types.ts";
import { backends, TEST_DATABASE_URL, type TestStore } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

const DAY = 86_400_000;
const MINUTE = 60_000;
const postgres = backends().find((backend) => backend.name === "postgres");

/**
 * Nodes of a cluster housekeep at the same moment (they start together and share the
 * hourly timer). Rolling up and purging usage runs a trigger that updates api_keys; four
 * nodes doing it at once deadlocked before they took turns.
 */
describe("usage housekeeping on several PostgreSQL nodes at once", { skip: postgres === undefined }, () => {
  let store: TestStore;
  const nodes: PostgresStorage[] = [];
  before(async () => {
    store = await (postgres as NonNullable<typeof postgres>).create();
    const { schema } = (store.storage as PostgresStorage).database;
    for (let i = 0; i < 3; i++) nodes.push(await PostgresStorage.open(TEST_DATABASE_URL, { schema, poolSize: 2 }));
  });
  after(async () => {
    for (const node of nodes) await node.close();
    await store.dispose();
  });

  test("four nodes roll up and purge together: no error, every count kept once, every last use kept", async () => {
    const clock = manualClock(Date.UTC(2027, 3, 1));
    const now = clock();
    const keys = Array.from({ length: 1000 }, (_, i) => keyRecord(now - 60 * DAY - i));
    await store.storage.keys.insertMany(keys);
    const increments: UsageIncrement[] = [];
    for (const [i, key] of keys.entries()) {
      for (let m = 0; m < 30; m++) {
        const bucket = now - 20 * DAY + m * MINUTE;
        increments.push({ keyId: key.id, bucket, outcome: "VALID", count: 1 + (i % 3), lastAt: bucket + i });
      }
      // Past the usage retention: purged as minutes.
      increments.push({ keyId: key.id, bucket: now - 95 * DAY, outcome: "VALID", count: 1, lastAt: now - 95 * DAY });
    }
    // Stored in no particular order, as years of flushes leave them.
    let seed = 11;
    for (let i = increments.length - 1; i > 0; i--) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      const j = seed % (i + 1);
      [increments[i], increments[j]] = [increments[j] as UsageIncrement, increments[i] as UsageIncrement];
    }
    for (let i = 0; i < increments.length; i += 5000) await store.storage.usage.add(increments.slice(i, i + 5000));
    const storages = [store.storage, ...nodes];
    const passes = await Promise.all(
      storages.map((storage) => new Housekeeper({ storage, clock, batchSize: 1000 }).runOnce()),
    );
    const rolled = passes.reduce((n, pass) => n + pass.usageRolledUp, 0);
    const purged = passes.reduce((n, pass) => n + pass.usage, 0);
    // A node that finds another at work skips its turn; one more pass finishes the rest.
    const last = await new Housekeeper({ storage: store.storage, clock, batchSize: 1000 }).runOnce();
    assert.equal(rolled + last.usageRolledUp, keys.length * 30);
    assert.equal(purged + last.usage, keys.length);
    for (const [i, key] of keys.entries()) {
      const rows = await store.storage.usage.read(key.id, now - 21 * DAY, now);
      assert.deepEqual(
        rows.map((row) => [row.bucket, row.count]),
        [[now - 20 * DAY, 30 * (1 + (i % 3))]],
        key.id,
      );
      assert.equal((await store.storage.keys.findById(key.id))?.lastUsedAt, now - 20 * DAY + 29 * MINUTE + i);
    }
  });
});
