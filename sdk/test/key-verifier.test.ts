import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { createKeyVerifier, VerifierError } from "../src/index.ts";
import { close, countingFetch, deadUrl, listen, startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";

describe("createKeyVerifier against a real Gatehouse", () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse();
  });
  after(() => gh.close());

  test("a valid key: the typed answer, expiresAt as ms, the rate-limit window", async () => {
    const { key, id, expiresAt } = await gh.createKey({ scopes: ["payments:read", "payments:write"] });
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey });
    const result = await verifier.verify(key, { scopes: ["payments:read"] });
    assert.equal(result.valid, true);
    if (!result.valid) return;
    assert.equal(result.keyId, id);
    assert.equal(result.ownerId, null);
    assert.deepEqual(result.scopes, ["payments:read", "payments:write"]);
    assert.equal(result.expiresAt, expiresAt);
    assert.equal(result.cached, false);
    assert.equal(result.ratelimit?.limit, 1000);
    assert.equal(result.ratelimit?.remaining, 999);
    assert.ok((result.ratelimit?.reset ?? 0) > Date.now());
  });

  test("refusals are answers with Gatehouse's code", async () => {
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey });
    const { key, id } = await gh.createKey({ scopes: ["a"] });
    const scope = await verifier.verify(key, { scopes: ["b"] });
    assert.deepEqual(
      { valid: scope.valid, code: scope.valid ? null : scope.code },
      {
        valid: false,
        code: "INSUFFICIENT_SCOPE",
      },
    );
    const unknown = `${key.slice(0, 10)}${key[10] === "A" ? "B" : "A"}${key.slice(11)}`;
    // Same shape, wrong checksum: Gatehouse says MALFORMED, not NOT_FOUND.
    assert.deepEqual(await verifier.verify(unknown), { valid: false, code: "MALFORMED", ratelimit: null });
    await gh.revoke(id);
    assert.deepEqual(await verifier.verify(key), { valid: false, code: "REVOKED", ratelimit: null });
  });

  test("junk is MALFORMED without a round trip", async () => {
    const counter = countingFetch();
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey, fetch: counter.fetch });
    for (const junk of ["", "nope", "gate_short", "x".repeat(5000), "gate_\u0000"]) {
      assert.deepEqual(await verifier.verify(junk), { valid: false, code: "MALFORMED", ratelimit: null }, junk);
    }
    assert.equal(counter.count, 0);
  });

  test("a service key without keys:verify is SERVICE_KEY_REJECTED, not an answer about the key", async () => {
    const { key } = await gh.createKey();
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: key });
    await assert.rejects(verifier.verify(key), (error) => {
      assert.ok(error instanceof VerifierError);
      assert.equal(error.code, "SERVICE_KEY_REJECTED");
      assert.equal(error.status, 403);
      assert.match(error.message, /\(403\): it lacks the keys:verify permission/);
      // The raw problem document is kept, but out of enumeration (and so out of most logs).
      assert.ok(!Object.keys(error).includes("problem"));
      assert.equal((error.problem as { code?: unknown }).code, "FORBIDDEN");
      return true;
    });
  });

  test("an unknown service key is SERVICE_KEY_REJECTED with 401, every time: retrying it does not brake the address", async () => {
    const { key } = await gh.createKey();
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: generateKey("gate") });
    for (let i = 0; i < 40; i++) {
      await assert.rejects(verifier.verify(key), (error) => {
        assert.ok(error instanceof VerifierError);
        assert.deepEqual([error.code, error.status], ["SERVICE_KEY_REJECTED", 401], `attempt ${i + 1}`);
        assert.match(error.message, /\(401\): it is unknown, revoked, expired or mistyped/);
        return true;
      });
    }
  });

  test("a service key over its own limit is SERVICE_RATE_LIMITED", async () => {
    const { key } = await gh.createKey();
    const { key: serviceKey } = await gh.createKey({
      permissions: ["keys:verify"],
      rateLimit: { limit: 1, windowSeconds: 3600 },
    });
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey });
    assert.equal((await verifier.verify(key)).valid, true);
    await assert.rejects(verifier.verify(key), (error) => {
      assert.ok(error instanceof VerifierError);
      assert.deepEqual([error.code, error.status], ["SERVICE_RATE_LIMITED", 429]);
      assert.ok((error.retryAfterSeconds ?? 0) > 0);
      return true;
    });
  });

  test("Gatehouse down: UNREACHABLE", async () => {
    const verifier = createKeyVerifier({ baseUrl: await deadUrl(), serviceKey: gh.serviceKey });
    const { key } = await gh.createKey();
    await assert.rejects(verifier.verify(key), { name: "VerifierError", code: "UNREACHABLE", status: null });
  });

  test("no answer within timeoutMs: TIMEOUT", async () => {
    const silent = createServer(() => {});
    const url = await listen(silent);
    try {
      const verifier = createKeyVerifier({ baseUrl: url, serviceKey: gh.serviceKey, timeoutMs: 50 });
      const { key } = await gh.createKey();
      await assert.rejects(verifier.verify(key), { name: "VerifierError", code: "TIMEOUT" });
    } finally {
      await close(silent);
    }
  });

  test("answers that do not match the verify API are INVALID_RESPONSE, never trusted", async () => {
    const { key } = await gh.createKey();
    const bodies = [
      "not json",
      "[]",
      JSON.stringify({ valid: "true" }),
      JSON.stringify({ valid: true, keyId: "k", ownerId: null, scopes: ["a"], expiresAt: null }),
      JSON.stringify({
        valid: true,
        keyId: "k",
        ownerId: null,
        scopes: "a",
        expiresAt: null,
        ratelimit: { limit: 1, remaining: 0, reset: 1 },
      }),
      JSON.stringify({ valid: false, code: "SOMETHING_NEW" }),
      JSON.stringify({
        valid: true,
        keyId: "k",
        ownerId: null,
        scopes: [],
        expiresAt: "tomorrow",
        ratelimit: { limit: 1, remaining: 0, reset: 1 },
      }),
    ];
    for (const body of bodies) {
      const verifier = createKeyVerifier({
        baseUrl: gh.url,
        serviceKey: gh.serviceKey,
        fetch: async () => new Response(body, { status: 200, headers: { "content-type": "application/json" } }),
      });
      await assert.rejects(verifier.verify(key), { name: "VerifierError", code: "INVALID_RESPONSE" }, body);
    }
  });

  test("5xx and 429 from Gatehouse carry its Retry-After", async () => {
    const { key } = await gh.createKey();
    for (const [status, code] of [
      [503, "UPSTREAM_ERROR"],
      [429, "SERVICE_RATE_LIMITED"],
    ] as const) {
      const verifier = createKeyVerifier({
        baseUrl: gh.url,
        serviceKey: gh.serviceKey,
        fetch: async () => new Response("{}", { status, headers: { "retry-after": "7" } }),
      });
      await assert.rejects(verifier.verify(key), { code, status, retryAfterSeconds: 7 });
    }
  });

  test("caller mistakes are TypeErrors at construction or call", async () => {
    assert.throws(() => createKeyVerifier({ baseUrl: "not a url", serviceKey: "k" }), TypeError);
    assert.throws(() => createKeyVerifier({ baseUrl: gh.url, serviceKey: "" }), TypeError);
    assert.throws(
      () => createKeyVerifier({ baseUrl: "http://auth.example.com", serviceKey: "k" }),
      /clear text/,
      "plain http to a remote host needs the loud switch",
    );
    assert.doesNotThrow(() =>
      createKeyVerifier({ baseUrl: "http://auth.example.com", serviceKey: "k", allowInsecureHttp: true }),
    );
    assert.throws(() => createKeyVerifier({ baseUrl: gh.url, serviceKey: "k", cacheTtlMs: -1 }), TypeError);
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey });
    const { key } = await gh.createKey();
    await assert.rejects(verifier.verify(key, { scopes: ['has"quote'] }), TypeError);
  });

  test("a path prefix in baseUrl is kept (Gatehouse behind a proxy at /auth/)", async () => {
    const seen: string[] = [];
    const verifier = createKeyVerifier({
      baseUrl: "https://gw.example.com/auth",
      serviceKey: "k",
      fetch: async (input) => {
        seen.push(String(input));
        return new Response(JSON.stringify({ valid: false, code: "NOT_FOUND" }), { status: 200 });
      },
    });
    const { key } = await gh.createKey();
    assert.deepEqual(await verifier.verify(key), { valid: false, code: "NOT_FOUND", ratelimit: null });
    assert.deepEqual(seen, ["https://gw.example.com/auth/v1/keys/verify"]);
  });
});

describe("createKeyVerifier when Gatehouse brakes this host's address", () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse();
  });
  after(() => gh.close());

  test("after 30 different unknown service keys: ADDRESS_BLOCKED, not the service key's own limit", async () => {
    const { key } = await gh.createKey();
    const known = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey });
    assert.equal((await known.verify(key)).valid, true);
    for (let i = 0; i < 30; i++) {
      const guessing = createKeyVerifier({ baseUrl: gh.url, serviceKey: generateKey("gate") });
      await assert.rejects(guessing.verify(key), { code: "SERVICE_KEY_REJECTED", status: 401 });
    }
    // A service key this Gatehouse has not let in lately, from the braked address.
    const { key: unseen } = await gh.createKey({ permissions: ["keys:verify"] });
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: unseen });
    await assert.rejects(verifier.verify(key), (error) => {
      assert.ok(error instanceof VerifierError);
      assert.deepEqual([error.code, error.status], ["ADDRESS_BLOCKED", 429]);
      assert.ok((error.retryAfterSeconds ?? 0) > 0 && (error.retryAfterSeconds ?? 0) <= 300);
      return true;
    });
    // The service key let in before the brake still passes (Gatehouse's own rule).
    assert.equal((await known.verify(key)).valid, true);
  });
});
