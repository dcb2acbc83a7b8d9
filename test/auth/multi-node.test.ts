import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeProtectedHeader } from "jose";
import { backends } from "../support/backends.ts";
import {
  CLUSTER_MASTER_KEY,
  createTestDatabase,
  type GatehouseNode,
  post,
  runCli,
  startNode,
} from "../support/processes.ts";
import { STRONG_PASSWORD, uniqueEmail } from "./support.ts";

const enabled = backends().some((b) => b.name === "postgres");

async function call(url: string, method: string, path: string, options: { body?: unknown; bearer?: string } = {}) {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: {
      ...(options.body !== undefined ? { "content-type": "application/json" } : {}),
      ...(options.bearer ? { authorization: `Bearer ${options.bearer}` } : {}),
    },
    ...(options.body !== undefined ? { body: JSON.stringify(options.body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
}

/**
 * Real `gatehouse serve` processes sharing PostgreSQL, Redis and one master key: a sign-in
 * on one node is good on every node, rotation never breaks a live token, and the sign-in
 * brakes count across nodes.
 */
describe("users and tokens across several nodes (PostgreSQL + Redis)", { skip: !enabled }, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  const nodes: GatehouseNode[] = [];
  let admin = "";
  const env = () => ({
    GATEHOUSE_DATABASE_URL: database.url,
    GATEHOUSE_REDIS_URL: "redis://127.0.0.1:6379",
    GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY,
    // One public issuer for the cluster, as behind a load balancer.
    GATEHOUSE_ISSUER: "http://127.0.0.1:8443",
    GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "2",
    // Redis outlives the test: loopback's per-address count must not build up across runs.
    GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP: "100000",
  });
  const node = (i: number) => {
    const n = nodes[i];
    assert.ok(n);
    return n.url;
  };

  before(async () => {
    database = await createTestDatabase();
    const init = await runCli(["init", "--json"], env());
    assert.equal(init.code, 0, init.stderr);
    admin = JSON.parse(init.stdout).adminKey;
    nodes.push(...(await Promise.all([startNode(env()), startNode(env())])));
  });

  after(async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    await database?.drop();
  });

  test("sign in on A, use and refresh on B; replay on A revokes the family everywhere", async () => {
    const email = uniqueEmail("cluster");
    const created = await post(node(0), "/v1/users", admin, { email, password: STRONG_PASSWORD });
    assert.equal(created.status, 201);
    const login = await call(node(0), "POST", "/auth/login", { body: { email, password: STRONG_PASSWORD } });
    assert.equal(login.status, 200);
    assert.equal((await call(node(1), "GET", "/auth/me", { bearer: login.body.access_token })).status, 200);
    const refreshed = await call(node(1), "POST", "/auth/refresh", {
      body: { refresh_token: login.body.refresh_token },
    });
    assert.equal(refreshed.status, 200);
    const replay = await call(node(0), "POST", "/auth/refresh", { body: { refresh_token: login.body.refresh_token } });
    assert.equal(replay.status, 400);
    assert.equal((await call(node(1), "GET", "/auth/me", { bearer: refreshed.body.access_token })).status, 401);
  });

  test("rotating with the CLI while nodes run breaks no token, and the promoted key is already known", async () => {
    const email = uniqueEmail("rotation");
    await post(node(0), "/v1/users", admin, { email, password: STRONG_PASSWORD });
    const before = await call(node(0), "POST", "/auth/login", { body: { email, password: STRONG_PASSWORD } });
    const rotated = await runCli(["keys", "rotate-signing", "--json", "--force"], env());
    assert.equal(rotated.code, 0, rotated.stderr);
    const { current } = JSON.parse(rotated.stdout);
    // A node started after the rotation signs with the promoted key at once...
    const late = await startNode(env());
    nodes.push(late);
    const fresh = await call(late.url, "POST", "/auth/login", { body: { email, password: STRONG_PASSWORD } });
    assert.equal(decodeProtectedHeader(fresh.body.access_token).kid, current);
    // ...and the running nodes, which published it as `next`, accept it without a refetch,
    // while tokens of the retired key stay good.
    for (const url of [node(0), node(1)]) {
      assert.equal((await call(url, "GET", "/auth/me", { bearer: fresh.body.access_token })).status, 200);
      assert.equal((await call(url, "GET", "/auth/me", { bearer: before.body.access_token })).status, 200);
    }
  });

  test("sign-in brakes count across nodes (Redis)", async () => {
    const email = uniqueEmail("brakes");
    await post(node(0), "/v1/users", admin, { email, password: STRONG_PASSWORD });
    const wrong = { body: { email, password: "definitely not it, sorry" } };
    assert.equal((await call(node(0), "POST", "/auth/login", wrong)).status, 401);
    assert.equal((await call(node(1), "POST", "/auth/login", wrong)).status, 401);
    assert.equal((await call(node(0), "POST", "/auth/login", wrong)).status, 401);
    const braked = await call(node(1), "POST", "/auth/login", { body: { email, password: STRONG_PASSWORD } });
    assert.equal(braked.status, 429);
    assert.ok(Number(braked.headers.get("retry-after")) >= 1);
  });
});
