import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

// The key that calls /v1/keys/verify is remembered between requests (CallerKeyCache).
// Whatever happens to that key must still count from the very next request.
for (const backend of backends()) {
  describe(`caller key changes take effect on the next request (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend);
    });
    after(() => server.close());

    async function serviceKey(): Promise<{ id: string; key: string }> {
      const created = await server.call("POST", "/v1/keys", {
        name: "resource server",
        scopes: [],
        permissions: ["keys:verify"],
      });
      assert.equal(created.status, 201);
      return { id: created.body.id, key: created.body.key };
    }

    const verifyAs = (caller: string) =>
      server.call("POST", "/v1/keys/verify", { key: server.adminKey }, { key: caller });

    test("a revocation heard while the caller's key is being read is not undone by caching that read", async () => {
      const caller = await serviceKey();
      const keys = server.gatehouse.storage.keys;
      const read = keys.findByDigest.bind(keys);
      const { promise: gate, resolve: open } = Promise.withResolvers<void>();
      const { promise: inFlight, resolve: reading } = Promise.withResolvers<void>();
      // The caller's record is read before the revocation and returned after it.
      keys.findByDigest = async (digest) => {
        const record = await read(digest);
        if (record?.id === caller.id) {
          reading();
          await gate;
        }
        return record;
      };
      try {
        const first = verifyAs(caller.key);
        await inFlight;
        keys.findByDigest = read;
        assert.equal((await server.call("POST", `/v1/keys/${caller.id}/revoke`, { reason: "test" })).status, 200);
        open();
        // Sent before the revocation: it may pass. The next one may not.
        assert.equal((await first).status, 200);
        assert.equal((await verifyAs(caller.key)).status, 401);
      } finally {
        keys.findByDigest = read;
      }
    });

    test("revoking the caller's key refuses its next call", async () => {
      const caller = await serviceKey();
      assert.equal((await verifyAs(caller.key)).status, 200);
      assert.equal((await verifyAs(caller.key)).status, 200);
      assert.equal((await server.call("POST", `/v1/keys/${caller.id}/revoke`, { reason: "test" })).status, 200);
      assert.equal((await verifyAs(caller.key)).status, 401);
    });

    test("taking keys:verify away from the caller's key refuses its next call", async () => {
      const caller = await serviceKey();
      assert.equal((await verifyAs(caller.key)).status, 200);
      const changed = await server.call("PATCH", `/v1/keys/${caller.id}`, { permissions: [] });
      assert.equal(changed.status, 200);
      assert.equal((await verifyAs(caller.key)).status, 403);
    });

    test("a key of the right length that differs from a remembered caller's by one character is refused", async () => {
      const caller = await serviceKey();
      assert.equal((await verifyAs(caller.key)).status, 200);
      const last = caller.key.at(-1) === "A" ? "B" : "A";
      for (const altered of [caller.key.slice(0, -1) + last, `x${caller.key.slice(1)}`, caller.key.replace("_", "-")]) {
        assert.equal(altered.length, caller.key.length);
        const answer = await verifyAs(altered);
        assert.equal(answer.status, 401, altered);
        assert.equal(answer.body.code, "UNAUTHENTICATED");
      }
      assert.equal((await verifyAs(caller.key)).status, 200);
    });

    test("rotating the caller's key without a grace period refuses the old key at once", async () => {
      const caller = await serviceKey();
      assert.equal((await verifyAs(caller.key)).status, 200);
      const rotated = await server.call("POST", `/v1/keys/${caller.id}/rotate`, { gracePeriodSeconds: 0 });
      assert.equal(rotated.status, 201);
      assert.equal((await verifyAs(caller.key)).status, 401);
      assert.equal((await verifyAs(rotated.body.key)).status, 200);
    });
  });
}
