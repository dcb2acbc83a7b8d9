import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ActorContext } from "../../src/audit/context.ts";
import { ForbiddenError } from "../../src/errors/gatehouse-error.ts";
import type { KeyPolicy } from "../../src/keys/key-policy.ts";
import { type Caller, KeyService } from "../../src/keys/key-service.ts";
import { manualClock } from "../../src/lib/clock.ts";
import type { KeyRepository, Storage } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { TEST_KEY_POLICY } from "../support/records.ts";

const policy: KeyPolicy = TEST_KEY_POLICY;

const context: ActorContext = { actor: "key:key_writer", ip: "127.0.0.1", userAgent: null, requestId: "r" };
const writer: Caller = { context, permissions: ["keys:write"] };

// Regression: a key holding keys:write was judged on the permissions its target held when
// it was read, and the change was written in a later statement. On PostgreSQL, an admin
// granting the target more power between the two (users:write, say) let the weaker key
// revoke, rotate or change a key more powerful than itself; and a rotation copied the
// permissions it had read, so a permission taken away in that moment came back on the
// replacement. The write now happens only if the target still holds the permissions that
// were judged; otherwise the request is judged again on what the key holds now.
for (const backend of backends()) {
  describe(`a key's permissions changing between the check and the write (${backend.name})`, () => {
    let store: TestStore;
    let keys: KeyService;
    let operator: KeyService;
    /** Runs once, after the service has read this key and before it writes: a concurrent admin. */
    const interleaved = new Map<string, () => Promise<unknown>>();
    before(async () => {
      store = await backend.create();
      const real = store.storage.keys;
      const racedKeys = new Proxy(real, {
        get(target, property) {
          if (property === "findById") {
            return async (id: string) => {
              const record = await target.findById(id);
              const concurrent = interleaved.get(id);
              interleaved.delete(id);
              await concurrent?.();
              return record;
            };
          }
          const value = Reflect.get(target, property);
          return typeof value === "function" ? value.bind(target) : value;
        },
      }) as KeyRepository;
      const clock = manualClock();
      keys = new KeyService({
        storage: { keys: racedKeys } as unknown as Storage,
        policy,
        clock,
        recordRefusal: () => {},
      });
      operator = new KeyService({ storage: store.storage, policy, clock, recordRefusal: () => {} });
    });
    after(() => store.dispose());

    const cli: Caller = { context: { ...context, actor: "cli" }, permissions: null };
    const newKey = async (permissions: string[]) =>
      (await operator.create({ name: "target", scopes: ["a"], permissions }, cli)).record;
    const grant = (id: string, permissions: string[]) => () => store.storage.keys.update(id, { permissions }, null);
    const forbidden = (missing: string[]) => (error: unknown) => {
      assert.ok(error instanceof ForbiddenError, String(error));
      assert.deepEqual(error.extensions?.missingPermissions, missing);
      return true;
    };

    test("a revocation is refused when the key was given a permission the caller lacks", async () => {
      const target = await newKey([]);
      interleaved.set(target.id, grant(target.id, ["users:write"]));
      await assert.rejects(keys.revoke(target.id, "mine", writer), forbidden(["users:write"]));
      const after = await store.storage.keys.findById(target.id);
      assert.equal(after?.revokedAt, null);
      assert.deepEqual(after?.permissions, ["users:write"]);
    });

    test("a change is refused when the key was given a permission the caller lacks", async () => {
      const target = await newKey([]);
      interleaved.set(target.id, grant(target.id, ["users:write"]));
      await assert.rejects(keys.update(target.id, { name: "mine", scopes: [] }, writer), forbidden(["users:write"]));
      const after = await store.storage.keys.findById(target.id);
      assert.equal(after?.name, "target");
      assert.deepEqual(after?.scopes, ["a"]);
    });

    test("a rotation is refused when the key was given a permission the caller lacks", async () => {
      const target = await newKey([]);
      interleaved.set(target.id, grant(target.id, ["users:write"]));
      await assert.rejects(keys.rotate(target.id, { gracePeriodSeconds: 0 }, writer), forbidden(["users:write"]));
      const after = await store.storage.keys.findById(target.id);
      assert.equal(after?.replacedBy, null);
      assert.equal(after?.revokedAt, null);
    });

    test("a permission taken away during a rotation does not come back on the replacement", async () => {
      const target = await newKey(["keys:write"]);
      interleaved.set(target.id, grant(target.id, []));
      const rotated = await keys.rotate(target.id, { gracePeriodSeconds: 0 }, writer);
      assert.deepEqual(rotated.record.permissions, []);
      assert.deepEqual((await store.storage.keys.findById(rotated.record.id))?.permissions, []);
    });

    // Regression: only the permissions were held during a rotation, so an allowlist (or
    // scopes, owner, rate limit) set on the key between its read and the write was lost:
    // the replacement copied what had been read, and was usable from anywhere.
    test("a binding or narrowing made during a rotation is not lost on the replacement", async () => {
      const target = await newKey([]);
      interleaved.set(target.id, () =>
        store.storage.keys.update(
          target.id,
          { allowedAddresses: ["192.0.2.0/24"], scopes: [], rateLimit: { limit: 5, windowSeconds: 60 } },
          null,
        ),
      );
      const rotated = await keys.rotate(target.id, { gracePeriodSeconds: 0 }, writer);
      const stored = await store.storage.keys.findById(rotated.record.id);
      for (const record of [rotated.record, stored]) {
        assert.deepEqual(record?.allowedAddresses, ["192.0.2.0/24"]);
        assert.deepEqual(record?.scopes, []);
        assert.deepEqual(record?.rateLimit, { limit: 5, windowSeconds: 60 });
      }
    });

    test("a change the caller may still make goes through, judged on what the key holds now", async () => {
      const target = await newKey(["keys:write"]);
      interleaved.set(target.id, grant(target.id, []));
      const updated = await keys.update(target.id, { name: "renamed" }, writer);
      assert.equal(updated.name, "renamed");
      assert.deepEqual(updated.permissions, []);
      const revoked = await keys.revoke(target.id, "done", writer);
      assert.notEqual(revoked.revokedAt, null);
    });
  });
}
