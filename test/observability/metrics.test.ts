import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

const all = backends();
const [backend] = all;

describe("Prometheus metrics", { skip: !backend }, () => {
  let server: TestServer;
  before(async () => {
    if (backend) server = await startServer(backend);
  });
  after(() => server?.close());

  test("/metrics needs metrics:read and counts requests and verification outcomes", async () => {
    const anonymous = await server.call("GET", "/metrics", undefined, { key: null });
    assert.equal(anonymous.status, 401);
    const { body } = await server.call("POST", "/v1/keys", { name: "m", scopes: [] });
    await server.call("POST", "/v1/keys/verify", { key: body.key });
    await server.call("POST", "/v1/keys/verify", { key: "gate_nope" });
    const limited = await server.call("POST", "/v1/keys", {
      name: "no-metrics",
      scopes: [],
      permissions: ["keys:read"],
    });
    assert.equal((await server.call("GET", "/metrics", undefined, { key: limited.body.key })).status, 403);

    const metrics = await server.call("GET", "/metrics");
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain/);
    const text = String(metrics.body);
    assert.match(text, /gatehouse_key_verifications_total\{outcome="VALID"\} 1/);
    assert.match(text, /gatehouse_key_verifications_total\{outcome="MALFORMED"\} 1/);
    assert.match(text, /gatehouse_http_requests_total\{method="POST",route="\/v1\/keys\/verify",status="200"\} 2/);
    assert.match(
      text,
      /gatehouse_http_request_duration_seconds_bucket\{le="[\d.]+",method="POST",route="\/v1\/keys"\}/,
    );
    assert.match(text, /gatehouse_process_resident_memory_bytes \d+/);
    // Route templates only: no ids or keys in label values.
    assert.ok(!text.includes(body.id));
    assert.ok(!text.includes(body.key));
  });
});

for (const each of all) {
  describe(`Prometheus metrics on ${each.name}`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(each);
    });
    after(() => server?.close());

    test("a 429 counts as an HTTP rate-limit rejection, with its status, and each answer once", async () => {
      const caller = await server.call("POST", "/v1/keys", {
        name: "tight",
        scopes: [],
        permissions: ["keys:verify"],
        rateLimit: { limit: 1, windowSeconds: 60 },
      });
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        const answer = await server.call("POST", "/v1/keys/verify", { key: "gate_nope" }, { key: caller.body.key });
        statuses.push(answer.status);
      }
      assert.deepEqual(statuses, [200, 429, 429]);
      assert.equal((await server.call("GET", "/no-such-route")).status, 404);
      const text = String((await server.call("GET", "/metrics")).body);
      assert.match(text, /gatehouse_rate_limit_rejections_total\{where="http"\} 2\n/);
      assert.match(text, /gatehouse_http_requests_total\{method="POST",route="\/v1\/keys\/verify",status="429"\} 2\n/);
      assert.match(text, /gatehouse_http_requests_total\{method="POST",route="\/v1\/keys\/verify",status="200"\} 1\n/);
      assert.match(
        text,
        /gatehouse_http_request_duration_seconds_count\{method="POST",route="\/v1\/keys\/verify"\} 3\n/,
      );
      assert.match(text, /gatehouse_http_requests_total\{method="GET",route="unmatched",status="404"\} 1\n/);
      // The PostgreSQL pool gauge only where there is a pool.
      assert.equal(text.includes("gatehouse_db_pool_connections"), each.name === "postgres");
    });
  });
}
