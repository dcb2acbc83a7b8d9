import assert from "node:assert/strict";
import { Writable } from "node:stream";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import { gatehousePlugin, requireKey } from "../src/fastify.ts";
import { createKeyVerifier, redactedRequest } from "../src/index.ts";
import { startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";

/** A guarded Fastify API whose log lines are collected, with or without the serializer. */
async function loggedApi(gh: TestGatehouse, options: { redact: "yes" | "no" }) {
  let logs = "";
  const stream = new Writable({
    write(chunk, _encoding, done) {
      logs += chunk.toString();
      done();
    },
  });
  const app = Fastify({
    logger: { level: "info", stream, ...(options.redact === "yes" ? { serializers: { req: redactedRequest } } : {}) },
  });
  await app.register(gatehousePlugin, {
    verifier: createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey }),
    realm: "payments",
  });
  app.get("/payments", { preHandler: requireKey({ scopes: ["payments:read"] }) }, async () => []);
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, url, logs: () => logs };
}

describe("redactedRequest: a key in the query string never reaches the app's logs", () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse();
  });
  after(() => gh.close());

  test("Fastify with the serializer logs the path alone; without it, the key is in the log", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"] });
    for (const redact of ["yes", "no"] as const) {
      const api = await loggedApi(gh, { redact });
      try {
        const response = await fetch(`${api.url}/payments?page=2&api_key=${key}`);
        assert.equal(response.status, 400);
        assert.equal(((await response.json()) as { code: string }).code, "KEY_IN_URL");
      } finally {
        await api.app.close();
      }
      const lines = api
        .logs()
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      const incoming = lines.find((line) => line.msg === "incoming request");
      assert.ok(incoming, api.logs());
      if (redact === "yes") {
        assert.equal(api.logs().includes(key), false, api.logs());
        assert.equal(api.logs().includes("api_key"), false);
        assert.equal(incoming.req.url, "/payments");
        assert.equal(incoming.req.method, "GET");
        assert.equal(incoming.req.remoteAddress, "127.0.0.1");
        assert.equal(typeof incoming.req.remotePort, "number");
      } else {
        // What the serializer is for: Fastify's own request line holds the key.
        assert.equal(api.logs().includes(key), true);
      }
    }
  });

  test("a bare IncomingMessage-like request, and URLs without a query", () => {
    assert.deepEqual(
      redactedRequest({ method: "GET", url: "/a/b?token=x#f", socket: { remoteAddress: "::1", remotePort: 4 } }),
      { method: "GET", url: "/a/b", remoteAddress: "::1", remotePort: 4 },
    );
    assert.equal(redactedRequest({ url: "/plain" }).url, "/plain");
    assert.equal(redactedRequest({ url: "/x#frag" }).url, "/x");
    assert.deepEqual(redactedRequest({}), {});
  });
});
