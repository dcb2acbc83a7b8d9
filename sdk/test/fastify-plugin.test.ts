import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import Fastify, { type FastifyInstance } from "fastify";
import { generateKey } from "../../src/keys/key-format.ts";
import { gatehousePlugin, requireKey } from "../src/fastify.ts";
import { createKeyVerifier, type KeyVerifier } from "../src/index.ts";
import { countingFetch, deadUrl, startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";

/** A real Fastify API, each route guarded with one line. */
async function paymentsApi(verifier: KeyVerifier): Promise<{ app: FastifyInstance; url: string }> {
  const app = Fastify({ logger: false });
  await app.register(gatehousePlugin, { verifier, realm: "payments" });
  app.get("/payments", { preHandler: requireKey({ scopes: ["payments:read"] }) }, async (request) => ({
    key: request.gatehouseKey,
  }));
  // An encapsulated child plugin still sees the decorations.
  await app.register(async (child) => {
    child.post("/payments", { preHandler: requireKey({ scopes: ["payments:write"] }) }, async (request) => ({
      keyId: request.gatehouseKey?.keyId,
    }));
  });
  app.get("/public", async (request) => ({ key: request.gatehouseKey }));
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url };
}

describe("Fastify plugin against a real Gatehouse", () => {
  let gh: TestGatehouse;
  let api: { app: FastifyInstance; url: string };
  let counter: ReturnType<typeof countingFetch>;
  before(async () => {
    gh = await startGatehouse();
    counter = countingFetch();
    api = await paymentsApi(createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey, fetch: counter.fetch }));
  });
  after(async () => {
    await api.app.close();
    await gh.close();
  });

  const call = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(`${api.url}${path}`, init);
    const text = await response.text();
    return { status: response.status, headers: response.headers, text, body: JSON.parse(text) };
  };
  const bearer = (key: string) => ({ headers: { authorization: `Bearer ${key}` } });

  test("valid key: 200 and request.gatehouseKey is the verified key", async () => {
    const { key, id, expiresAt } = await gh.createKey({ scopes: ["payments:read"] });
    const r = await call("/payments", bearer(key));
    assert.equal(r.status, 200);
    assert.deepEqual(r.body.key, { keyId: id, ownerId: null, scopes: ["payments:read"], expiresAt });
    assert.equal(r.headers.get("ratelimit-policy"), '"key";q=1000');
    assert.equal((await call("/public")).body.key, null, "unguarded routes see null");
  });

  test("X-API-Key and a guarded route inside a child plugin", async () => {
    const { key, id } = await gh.createKey({ scopes: ["payments:write"] });
    const r = await call("/payments", { method: "POST", headers: { "x-api-key": key } });
    assert.equal(r.status, 200);
    assert.equal(r.body.keyId, id);
  });

  test("missing key 401, bad keys 401 with one identical body", async () => {
    const missing = await call("/payments");
    assert.equal(missing.status, 401);
    assert.match(missing.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="payments"');
    const { key, id } = await gh.createKey({ scopes: ["payments:read"] });
    await gh.revoke(id);
    for (const bad of [generateKey("gate"), key, "gate_malformed"]) {
      const r = await call("/payments", bearer(bad));
      assert.equal(r.status, 401, bad);
      assert.equal(r.text, missing.text, bad);
      assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="payments", error="invalid_token"');
    }
  });

  test("wrong scope 403 with the scope in the challenge", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"] });
    const r = await call("/payments", { method: "POST", ...bearer(key) });
    assert.equal(r.status, 403);
    assert.equal(
      r.headers.get("www-authenticate"),
      'Bearer realm="payments", error="insufficient_scope", scope="payments:write"',
    );
    assert.equal(r.body.code, "INSUFFICIENT_SCOPE");
  });

  test("rate limited 429 with Retry-After", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"], rateLimit: { limit: 1, windowSeconds: 30 } });
    assert.equal((await call("/payments", bearer(key))).status, 200);
    const r = await call("/payments", bearer(key));
    assert.equal(r.status, 429);
    const retryAfter = Number(r.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 30, `Retry-After ${retryAfter}`);
    assert.equal(r.headers.get("ratelimit-policy"), '"key";q=1');
    assert.match(r.headers.get("ratelimit") ?? "", /^"key";r=0;t=\d+$/);
  });

  test("key in the query string: 400, not verified", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"] });
    const before = counter.count;
    const r = await call(`/payments?api_key=${key}`);
    assert.equal(r.status, 400);
    assert.equal(r.body.code, "KEY_IN_URL");
    assert.equal(counter.count, before);
  });

  test("Gatehouse down: 503 with Retry-After", async () => {
    const down = await paymentsApi(createKeyVerifier({ baseUrl: await deadUrl(), serviceKey: gh.serviceKey }));
    try {
      const { key } = await gh.createKey({ scopes: ["payments:read"] });
      const response = await fetch(`${down.url}/payments`, bearer(key));
      assert.equal(response.status, 503);
      assert.equal(response.headers.get("retry-after"), "5");
      assert.equal(JSON.parse(await response.text()).code, "VERIFIER_UNAVAILABLE");
    } finally {
      await down.app.close();
    }
  });

  test("requireKey without the plugin fails closed (500), and bad scopes fail at declaration", async () => {
    const app = Fastify({ logger: false });
    app.get("/x", { preHandler: requireKey() }, async () => ({ reached: true }));
    const r = await app.inject({ method: "GET", url: "/x", headers: { "x-api-key": generateKey("gate") } });
    assert.equal(r.statusCode, 500);
    assert.doesNotMatch(r.body, /reached/);
    await app.close();
    assert.throws(() => requireKey({ scopes: ["has space"] }), TypeError);
  });

  test("loading the SDK, the Fastify entry included, never loads fastify at run time", () => {
    // A resolve hook refuses `fastify`; the SDK's entry points must still load.
    const script = `
      import { registerHooks } from "node:module";
      registerHooks({ resolve(specifier, context, next) {
        if (specifier === "fastify" || specifier.startsWith("fastify/")) throw new Error("fastify loaded at run time");
        return next(specifier, context);
      } });
      const sdk = await import(${JSON.stringify(fileURLToPath(new URL("../src/index.ts", import.meta.url)))});
      const fastify = await import(${JSON.stringify(fileURLToPath(new URL("../src/fastify.ts", import.meta.url)))});
      console.log(typeof sdk.guard, typeof fastify.requireKey, typeof fastify.gatehousePlugin);
    `;
    const child = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8" });
    assert.equal(child.stderr, "");
    assert.equal(child.stdout.trim(), "function function function");
  });
});
