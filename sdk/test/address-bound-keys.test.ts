import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { gatehousePlugin, requireKey } from "../src/fastify.ts";
import { createKeyVerifier, guard, type KeyVerifier } from "../src/index.ts";
import { close, countingFetch, listen, startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";

/**
 * Keys bound to addresses (`allowedAddresses`): the guards pass the client's address to
 * Gatehouse, refuse with 403 ADDRESS_NOT_ALLOWED elsewhere, and the positive cache never
 * answers for one address with what Gatehouse said for another.
 */
describe("keys bound to addresses, through the SDK's guards", () => {
  let gh: TestGatehouse;
  let verifier: KeyVerifier;
  let counter: ReturnType<typeof countingFetch>;
  let plain: Server;
  let plainUrl: string;
  let fastify: FastifyInstance;
  let fastifyUrl: string;
  before(async () => {
    gh = await startGatehouse();
    counter = countingFetch();
    verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey, fetch: counter.fetch });
    plain = createServer(async (req, res) => {
      // A header stands in for Hono's getConnInfo: the app says where the client is.
      const told = req.headers["x-test-client"];
      const result = await guard(req, { verifier, ...(typeof told === "string" ? { address: told } : {}) });
      res.writeHead(result.ok ? 200 : result.status, result.headers).end(JSON.stringify(result.ok ? {} : result.body));
    });
    plainUrl = await listen(plain);
    fastify = Fastify({ logger: false });
    await fastify.register(gatehousePlugin, { verifier });
    fastify.get("/", { preHandler: requireKey() }, async () => ({}));
    fastifyUrl = await fastify.listen({ port: 0, host: "127.0.0.1" });
  });
  after(async () => {
    await close(plain);
    await fastify.close();
    await gh.close();
  });

  const get = async (url: string, key: string, headers: Record<string, string> = {}) => {
    const response = await fetch(url, { headers: { authorization: `Bearer ${key}`, ...headers } });
    return {
      status: response.status,
      body: (await response.json()) as { code?: string; type?: string; detail?: string },
    };
  };

  test("node:http and Fastify: the socket's address decides; a key bound elsewhere gets 403", async () => {
    const here = await gh.createKey({ allowedAddresses: ["127.0.0.0/8"] });
    const elsewhere = await gh.createKey({ allowedAddresses: ["192.0.2.0/24"] });
    for (const url of [plainUrl, fastifyUrl]) {
      assert.equal((await get(url, here.key)).status, 200, url);
      const refused = await get(url, elsewhere.key);
      assert.equal(refused.status, 403, url);
      assert.equal(refused.body.code, "ADDRESS_NOT_ALLOWED");
      assert.equal(refused.body.type, "urn:gatehouse:error:ADDRESS_NOT_ALLOWED");
      // The address the guard used, so a proxy's address there shows a missing trust setting.
      assert.match(refused.body.detail ?? "", /\(127\.0\.0\.1\)/);
    }
  });

  test("a service key bound elsewhere: 503, and the cause says why, with the address Gatehouse saw", async () => {
    const service = await gh.server.call("POST", "/v1/keys", {
      name: "bound verifier",
      scopes: [],
      permissions: ["keys:verify"],
      allowedAddresses: ["10.20.0.0/16"],
    });
    const bound = createKeyVerifier({ baseUrl: gh.url, serviceKey: service.body.key });
    const { key } = await gh.createKey();
    await assert.rejects(
      () => bound.verify(key),
      (error: Error & { code?: string; status?: number }) => {
        assert.equal(error.code, "SERVICE_KEY_REJECTED");
        assert.equal(error.status, 403);
        assert.match(error.message, /ADDRESS_NOT_ALLOWED/);
        assert.match(error.message, /bound to addresses/);
        assert.match(error.message, /127\.0\.0\.1/);
        assert.doesNotMatch(error.message, /keys:verify/);
        return true;
      },
    );
  });

  test("an address the app passes replaces the socket's", async () => {
    const bound = await gh.createKey({ allowedAddresses: ["192.0.2.0/24"] });
    assert.equal((await get(plainUrl, bound.key, { "x-test-client": "192.0.2.44" })).status, 200);
    assert.equal((await get(plainUrl, bound.key, { "x-test-client": "198.51.100.1" })).status, 403);
  });

  test("the positive cache answers per key and address", async () => {
    const cached = createKeyVerifier({
      baseUrl: gh.url,
      serviceKey: gh.serviceKey,
      fetch: counter.fetch,
      cacheTtlMs: 60_000,
    });
    const bound = await gh.createKey({ allowedAddresses: ["192.0.2.1"] });
    const before = counter.count;
    assert.equal((await cached.verify(bound.key, { address: "192.0.2.1" })).valid, true);
    const again = await cached.verify(bound.key, { address: "192.0.2.1" });
    assert.equal(again.valid && again.cached, true);
    assert.equal(counter.count, before + 1);
    // Another address is Gatehouse's to judge, and it refuses.
    const other = await cached.verify(bound.key, { address: "192.0.2.2" });
    assert.deepEqual(other, { valid: false, code: "ADDRESS_NOT_ALLOWED", ratelimit: null });
    assert.deepEqual(await cached.verify(bound.key), { valid: false, code: "ADDRESS_NOT_ALLOWED", ratelimit: null });
    assert.equal(counter.count, before + 3);
    await assert.rejects(() => cached.verify(bound.key, { address: "not-an-ip" }), TypeError);
  });
});
