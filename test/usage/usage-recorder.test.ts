import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { PACKED_ID_BYTES, packId } from "../../src/keys/packed-id.ts";
import { newId } from "../../src/lib/ids.ts";
import type { Storage, UsageIncrement } from "../../src/storage/types.ts";
import { UsageRecorder } from "../../src/usage/usage-recorder.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

const MINUTE = 60_000;
const T0 = Date.UTC(2026, 10, 28, 12, 0, 0);

/** What storage should hold after every flush: count per key, minute and outcome. */
class Model {
  readonly counts = new Map<string, number>();
  add(keyId: string, outcome: string, at: number): void {
    const name = `${keyId}|${at - (at % MINUTE)}|${outcome}`;
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }
}

async function stored(storage: Storage, keyIds: readonly string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const keyId of keyIds) {
    for (const row of await storage.usage.read(keyId, T0 - MINUTE, T0 + 10 * MINUTE)) {
      counts.set(`${keyId}|${row.bucket}|${row.outcome}`, row.count);
    }
  }
  return counts;
}

/**
 * The real storage, with writes of usage that can be made to fail: the way a database
 * that goes away in the middle of a flush looks to the recorder.
 */
function withFailingUsage(storage: Storage): { storage: Storage; failOnCall: (n: number | null) => void } {
  let calls = 0;
  let failAt: number | null = null;
  const usage = {
    add(increments: readonly UsageIncrement[]) {
      calls++;
      if (failAt !== null && calls === failAt) return Promise.reject(new Error("storage went away"));
      return storage.usage.add(increments);
    },
    read: storage.usage.read.bind(storage.usage),
    rollUp: storage.usage.rollUp.bind(storage.usage),
  };
  return {
    storage: { ...storage, usage } as Storage,
    failOnCall(n) {
      calls = 0;
      failAt = n;
    },
  };
}

for (const backend of backends()) {
  describe(`usage recorder (${backend.name})`, () => {
    let store: TestStore;
    before(async () => {
      store = await backend.create();
    });
    after(() => store.dispose());

    test("every use is counted once, per key, minute and outcome, across flushes, minutes and a failed flush", async () => {
      const { storage, failOnCall } = withFailingUsage(store.storage);
      const recorder = new UsageRecorder(storage, { intervalMs: 0 });
      const model = new Model();
      // 2,500 keys with Gatehouse's id form (the table's way) and two of another form.
      const keyIds = Array.from({ length: 2500 }, (_, i) => newId("key", T0 - i));
      keyIds.push("legacy-key-1", "imported/key:2");
      const outcomes = ["VALID", "VALID", "VALID", "VALID", "RATE_LIMITED", "INSUFFICIENT_SCOPE", "EXPIRED"];
      let seed = 7;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2147483648;
        return seed % n;
      };
      let at = T0 + 58_000;
      const use = (count: number) => {
        for (let i = 0; i < count; i++) {
          const keyId = keyIds[random(keyIds.length)] as string;
          const outcome = outcomes[random(outcomes.length)] as string;
          recorder.record(keyId, outcome, at);
          model.add(keyId, outcome, at);
          at += random(3);
        }
      };

      use(3000); // crosses into the next minute
      await recorder.flush();
      assert.deepEqual(await stored(storage, keyIds), model.counts);

      // A flush that fails after its first chunk of valid uses: nothing written twice,
      // nothing lost; the counts given back meet new counts of the same minute.
      use(12_000); // more keys than one chunk of valid uses
      failOnCall(3); // the counts of other outcomes, one chunk of valid uses, then a failure
      await recorder.flush();
      failOnCall(null);
      use(3000);
      at += MINUTE; // and a minute passes before the next flush
      use(500);
      await recorder.flush();
      assert.deepEqual(await stored(storage, keyIds), model.counts);
      await recorder.stop();
    });

    test("a valid use counted by its packed id adds to the same count as one counted by the id string", async () => {
      const recorder = new UsageRecorder(store.storage, { intervalMs: 0 });
      const keyId = newId("key", T0);
      const packed = Buffer.alloc(PACKED_ID_BYTES);
      assert.equal(packId(keyId, packed, 0), true);
      recorder.record(keyId, "VALID", T0 + 1, packed);
      recorder.record(keyId, "VALID", T0 + 2);
      recorder.record(keyId, "VALID", T0 + 3, packed);
      await recorder.flush();
      assert.deepEqual(await stored(store.storage, [keyId]), new Map([[`${keyId}|${T0}|VALID`, 3]]));
      await recorder.stop();
    });

    test("the last valid use of each key travels with its counts", async () => {
      const recorder = new UsageRecorder(store.storage, { intervalMs: 0 });
      const record = keyRecord(T0);
      const keyId = record.id;
      await store.storage.keys.insert(record, null);
      recorder.record(keyId, "VALID", T0 + 10);
      recorder.record(keyId, "VALID", T0 + 30);
      recorder.record(keyId, "VALID", T0 + 20);
      recorder.record(keyId, "REVOKED", T0 + 40);
      await recorder.stop();
      const rows = await store.storage.usage.read(keyId, T0, T0 + MINUTE);
      assert.deepEqual(rows, [
        { bucket: T0, outcome: "REVOKED", count: 1 },
        { bucket: T0, outcome: "VALID", count: 3 },
      ]);
      assert.equal((await store.storage.keys.findById(keyId))?.lastUsedAt, T0 + 30);
    });

    test("the last use not yet written is known in memory, also while a flush is writing it", async () => {
      const recorder = new UsageRecorder(store.storage, { intervalMs: 0 });
      const keyId = newId("key", T0);
      const other = "legacy-key-9";
      assert.equal(recorder.lastUseNotWritten(keyId), null);
      recorder.record(keyId, "VALID", T0 + 20);
      recorder.record(keyId, "VALID", T0 + 10);
      recorder.record(keyId, "EXPIRED", T0 + 50);
      recorder.record(other, "VALID", T0 + 7);
      assert.equal(recorder.lastUseNotWritten(keyId), T0 + 20, "failures are not uses");
      assert.equal(recorder.lastUseNotWritten(other), T0 + 7, "ids of another form too");
      const flushing = recorder.flush();
      assert.equal(recorder.lastUseNotWritten(keyId), T0 + 20, "while the flush writes it");
      await flushing;
      assert.equal(recorder.lastUseNotWritten(keyId), null, "written: storage has it now");
      await recorder.stop();
    });

    test("a read sees each count once, written or held in memory, and writes nothing", async () => {
      const recorder = new UsageRecorder(store.storage, { intervalMs: 0 });
      const keyId = newId("key", T0 + 5 * MINUTE);
      const model = new Model();
      const use = (outcome: string, at: number) => {
        recorder.record(keyId, outcome, at);
        model.add(keyId, outcome, at);
      };
      /** Storage and memory together, as the usage endpoint adds them up. */
      const seen = async (read: () => Promise<Array<{ bucket: number; outcome: string; count: number }>>) => {
        const { stored, unwritten } = await recorder.readWithUnwritten(keyId, read);
        const counts = new Map<string, number>();
        for (const row of [...stored, ...unwritten]) {
          const name = `${keyId}|${row.bucket}|${row.outcome}`;
          counts.set(name, (counts.get(name) ?? 0) + row.count);
        }
        return { counts, unwritten };
      };
      const readStored = () => store.storage.usage.read(keyId, T0 - MINUTE, T0 + 10 * MINUTE);

      use("VALID", T0 + 5 * MINUTE + 1);
      use("VALID", T0 + 5 * MINUTE + 9);
      use("REVOKED", T0 + 5 * MINUTE + 3);
      // A new minute closes the first one: its counts wait in memory for the next flush.
      use("VALID", T0 + 6 * MINUTE + 2);
      const before = await seen(readStored);
      assert.deepEqual(before.counts, model.counts);
      assert.equal(Math.max(...before.unwritten.map((row) => row.lastAt ?? 0)), T0 + 6 * MINUTE + 2);
      assert.deepEqual(await readStored(), [], "reading wrote nothing");

      await recorder.flush();
      use("VALID", T0 + 6 * MINUTE + 4);
      assert.deepEqual((await seen(readStored)).counts, model.counts, "part written, part in memory");

      // A flush that starts while storage is being read (the timer firing mid-read):
      // the read is taken again, so nothing is counted twice or missed.
      use("EXPIRED", T0 + 6 * MINUTE + 5);
      let reads = 0;
      const racing = await seen(async () => {
        reads++;
        if (reads === 1) void recorder.flush();
        return readStored();
      });
      assert.equal(reads, 2);
      assert.deepEqual(racing.counts, model.counts);
      assert.deepEqual(racing.unwritten, [], "the flush wrote everything");
      await recorder.stop();
    });

    test("a read that keeps meeting flushes writes first, and still shows what a failed flush gave back", async () => {
      const keyId = newId("key", T0 + 7 * MINUTE);
      const usage = {
        // Storage refuses every write: each flush gives its counts back to memory.
        add: () => Promise.reject(new Error("storage went away")),
        read: store.storage.usage.read.bind(store.storage.usage),
        rollUp: store.storage.usage.rollUp.bind(store.storage.usage),
      };
      const recorder = new UsageRecorder({ ...store.storage, usage } as Storage, { intervalMs: 0 });
      for (let i = 0; i < 3; i++) recorder.record(keyId, "VALID", T0 + 7 * MINUTE + i);
      let reads = 0;
      const { stored, unwritten } = await recorder.readWithUnwritten(keyId, async () => {
        // A flush starts during each of the first three reads (back-to-back flushes).
        if (++reads <= 3) void recorder.flush();
        return store.storage.usage.read(keyId, T0, T0 + 10 * MINUTE);
      });
      assert.equal(reads, 4, "three attempts, then written first and read once more");
      assert.deepEqual(stored, []);
      assert.equal(
        unwritten.reduce((n, row) => n + row.count, 0),
        3,
        "nothing could be written, and every use is still shown",
      );
    });

    test("calls arriving during a flush share one more write, not one each", async () => {
      const keyId = newId("key", T0);
      let writes = 0;
      // Uses keep arriving: one more during every write, so each flush has something new.
      const usage = {
        add(increments: readonly UsageIncrement[]) {
          writes++;
          recorder.record(keyId, "VALID", T0 + 100 + writes);
          return store.storage.usage.add(increments);
        },
        read: store.storage.usage.read.bind(store.storage.usage),
        rollUp: store.storage.usage.rollUp.bind(store.storage.usage),
      };
      const recorder: UsageRecorder = new UsageRecorder({ ...store.storage, usage } as Storage, { intervalMs: 0 });
      recorder.record(keyId, "VALID", T0 + 1);
      const first = recorder.flush();
      const waiting = Array.from({ length: 8 }, () => recorder.flush());
      await Promise.all([first, ...waiting]);
      assert.equal(writes, 2, "the flush in flight, then one for all eight");
      await recorder.stop();
      // Every use written but the one made up during stop's own write (a stopping server
      // takes no more requests).
      assert.deepEqual(await stored(store.storage, [keyId]), new Map([[`${keyId}|${T0}|VALID`, 3]]));
    });
  });
}
