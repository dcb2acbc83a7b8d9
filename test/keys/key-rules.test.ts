import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { ValidationError } from "../../src/errors/gatehouse-error.ts";
import type { KeyPolicy } from "../../src/keys/key-policy.ts";
import { MIN_LIFETIME_SECONDS } from "../../src/keys/key-rules.ts";
import { type CreateKeyInput, KeyService } from "../../src/keys/key-service.ts";
import { manualClock } from "../../src/lib/clock.ts";
import type { AuditEventInput } from "../../src/storage/types.ts";
import { backends, type TestStore } from "../support/backends.ts";
import { TEST_KEY_POLICY } from "../support/records.ts";

const policy: KeyPolicy = TEST_KEY_POLICY;

// The local operator holds every permission: what is refused here is refused for the
// input alone, as the CLI (which acts as the operator) meets it.
const operator = { context: CLI_ACTOR, permissions: null };

// Regression: the key service checked nothing itself, so `gatehouse keys create` stored
// keys the API refuses (already expired, nameless, with scopes no verify request can ask for).
for (const backend of backends()) {
  describe(`key field rules in the key service (${backend.name})`, () => {
    let store: TestStore;
    let keys: KeyService;
    const refusals: AuditEventInput[] = [];
    before(async () => {
      store = await backend.create();
      keys = new KeyService({
        storage: store.storage,
        policy,
        clock: manualClock(),
        recordRefusal: (event) => refusals.push(event),
      });
    });
    after(() => store.dispose());

    const valid: CreateKeyInput = { name: "ok", scopes: ["payments:read"] };

    const refused = async (operation: Promise<unknown>, paths: string[]) => {
      await assert.rejects(operation, (error: unknown) => {
        assert.ok(error instanceof ValidationError, String(error));
        assert.equal(error.code, "VALIDATION_FAILED");
        assert.deepEqual(
          error.errors.map((e) => e.path),
          paths,
        );
        return true;
      });
    };

    test("create refuses what the API's schema refuses, and stores nothing", async () => {
      const cases: Array<[Partial<CreateKeyInput>, string[]]> = [
        [{ expiresInSeconds: 0 }, ["/expiresInSeconds"]],
        [{ expiresInSeconds: MIN_LIFETIME_SECONDS - 1 }, ["/expiresInSeconds"]],
        [{ expiresInSeconds: -60 }, ["/expiresInSeconds"]],
        [{ expiresInSeconds: 90.5 }, ["/expiresInSeconds"]],
        [{ name: "" }, ["/name"]],
        [{ name: "n".repeat(201) }, ["/name"]],
        [{ ownerId: "" }, ["/ownerId"]],
        [{ ownerId: "o".repeat(201) }, ["/ownerId"]],
        [{ scopes: ["a b", ""] }, ["/scopes/0", "/scopes/1"]],
        [{ scopes: ['say"hi', "back\\slash", "s".repeat(129)] }, ["/scopes/0", "/scopes/1", "/scopes/2"]],
        [{ scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, ["/scopes"]],
        [{ permissions: ["root"] }, ["/permissions"]],
        [{ rateLimit: { limit: 0, windowSeconds: 86_401 } }, ["/rateLimit/limit", "/rateLimit/windowSeconds"]],
        [{ name: "", ownerId: "", expiresInSeconds: 0 }, ["/name", "/ownerId", "/expiresInSeconds"]],
      ];
      for (const [change, paths] of cases) await refused(keys.create({ ...valid, ...change }, operator), paths);
      assert.deepEqual(await keys.list({ limit: 10 }), [], "nothing was stored");
    });

    test("the message names each field and the rule", async () => {
      await assert.rejects(keys.create({ ...valid, name: "", scopes: ["a b"], expiresInSeconds: 10 }, operator), {
        message:
          "name must not be empty; scopes/0 must be printable ASCII without spaces, quotes or backslashes; " +
          `expiresInSeconds must be a whole number of seconds, from ${MIN_LIFETIME_SECONDS} to the maximum key lifetime.`,
      });
    });

    test("the limits themselves are accepted", async () => {
      const created = await keys.create(
        {
          name: "n".repeat(200),
          ownerId: "o".repeat(200),
          scopes: ["s".repeat(128), "payments:read", "!#$%&'()*+,-./:;<=>?@[]^_`{|}~"],
          permissions: ["keys:read"],
          expiresInSeconds: MIN_LIFETIME_SECONDS,
          rateLimit: { limit: 1, windowSeconds: 86_400 },
        },
        operator,
      );
      assert.equal(created.record.expiresAt, created.record.createdAt + MIN_LIFETIME_SECONDS * 1000);
    });

    test("update and rotate apply the same rules", async () => {
      const { record } = await keys.create(valid, operator);
      await refused(keys.update(record.id, { name: "" }, operator), ["/name"]);
      await refused(keys.update(record.id, { scopes: ["a b"] }, operator), ["/scopes/0"]);
      await refused(keys.update(record.id, { ownerId: "" }, operator), ["/ownerId"]);
      await refused(keys.rotate(record.id, { gracePeriodSeconds: 0, expiresInSeconds: 10 }, operator), [
        "/expiresInSeconds",
      ]);
      const unchanged = await keys.get(record.id);
      assert.deepEqual(unchanged, record, "the key is as it was");
      // Clearing the owner is still allowed (null), as over HTTP.
      assert.equal((await keys.update(record.id, { ownerId: null }, operator)).ownerId, null);
      assert.equal(refusals.length, 0, "a validation failure is not an escalation attempt");
    });

    // Regression: a key made while GATEHOUSE_KEY_ALLOW_NO_EXPIRY was on could not be rotated
    // once it was turned off: the replacement inherited "never", which the policy refused,
    // with a message asking to omit expiresInSeconds (omitted already; `gatehouse keys
    // rotate` cannot even give it). It now gets the maximum lifetime, today's bound.
    test("a key that never expires is rotated into one with the maximum lifetime once no-expiry is not allowed", async () => {
      const clock = manualClock();
      const lenient = new KeyService({
        storage: store.storage,
        policy: { ...policy, allowNoExpiry: true },
        clock,
        recordRefusal: () => {},
      });
      const forever = await lenient.create({ ...valid, expiresInSeconds: null }, operator);
      assert.equal(forever.record.expiresAt, null);
      const strict = new KeyService({ storage: store.storage, policy, clock, recordRefusal: () => {} });
      const rotated = await strict.rotate(forever.record.id, { gracePeriodSeconds: 0 }, operator);
      assert.equal(rotated.record.expiresAt, clock() + policy.maxLifetimeSeconds * 1000);
      // Where it is still allowed, "never" is inherited as before.
      const again = await lenient.rotate(
        (await lenient.create({ ...valid, expiresInSeconds: null }, operator)).record.id,
        { gracePeriodSeconds: 0 },
        operator,
      );
      assert.equal(again.record.expiresAt, null);
    });
  });
}
