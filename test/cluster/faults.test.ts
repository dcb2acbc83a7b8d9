import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { Socket } from "node:net";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { after, describe, test } from "node:test";
import pg from "pg";
import { backends, tempDir } from "../support/backends.ts";
import {
  CLUSTER_MASTER_KEY,
  createTestDatabase,
  type GatehouseNode,
  post,
  runCli,
  startNode,
  TcpProxy,
} from "../support/processes.ts";

const withPostgres = backends().some((b) => b.name === "postgres");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** POST /v1/keys/verify as a raw Response (status and headers read by the test), with a hang guard. */
function verifyRaw(url: string, admin: string, key: string): Promise<Response> {
  return fetch(`${url}/v1/keys/verify`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
    body: JSON.stringify({ key }),
    signal: AbortSignal.timeout(15_000),
  });
}

/** A fresh database reached through a proxy the test can cut; both undone by `cleanup`. */
async function proxiedDatabase(cleanup: Array<() => Promise<unknown>>): Promise<{ proxy: TcpProxy; url: string }> {
  const database = await createTestDatabase();
  cleanup.push(() => database.drop());
  const proxy = new TcpProxy({ host: "127.0.0.1", port: 5432 });
  const port = await proxy.start();
  cleanup.push(() => proxy.cut());
  const url = new URL(database.url);
  url.port = String(port);
  url.hostname = "127.0.0.1";
  return { proxy, url: url.toString() };
}

/**
 * A fresh database and a proxy to the machine's Redis that the test can cut; both undone
 * by `cleanup`. `env` names the database and the master key; `redisUrl` goes through the proxy.
 */
async function databaseAndProxiedRedis(
  cleanup: Array<() => Promise<unknown>>,
): Promise<{ redis: TcpProxy; redisUrl: string; env: Record<string, string> }> {
  const database = await createTestDatabase();
  cleanup.push(() => database.drop());
  const redis = new TcpProxy({ host: "127.0.0.1", port: 6379 });
  const redisPort = await redis.start();
  cleanup.push(() => redis.cut());
  return {
    redis,
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    env: { GATEHOUSE_DATABASE_URL: database.url, GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY },
  };
}

async function waitFor(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  assert.fail(`gave up waiting for ${what}`);
}

describe("faults: Redis unavailable", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("verification goes on with per-node limits, revocations still hold, and recovery is automatic", async () => {
    const { redis, redisUrl, env: base } = await databaseAndProxiedRedis(cleanup);
    const env = { ...base, GATEHOUSE_REDIS_URL: redisUrl };
    const nodes = await Promise.all([startNode(env), startNode(env)]);
    cleanup.push(() => Promise.all(nodes.map((n) => n.stop())));
    const [a, b] = nodes.map((n) => n.url) as [string, string];
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;

    const doomed = await post(a, "/v1/keys", admin, { name: "doomed", scopes: [] });
    const limited = await post(a, "/v1/keys", admin, {
      name: "lim",
      scopes: [],
      rateLimit: { limit: 3, windowSeconds: 600 },
    });

    await redis.cut();
    // Still verifying, on both nodes.
    assert.equal((await post(a, "/v1/keys/verify", admin, { key: doomed.body.key })).body.valid, true);
    assert.equal((await post(b, "/v1/keys/verify", admin, { key: doomed.body.key })).body.valid, true);
    // A revocation on one node is enforced on the other: PostgreSQL is the source of truth.
    assert.equal((await post(b, `/v1/keys/${doomed.body.id}/revoke`, admin, {})).status, 200);
    assert.equal((await post(a, "/v1/keys/verify", admin, { key: doomed.body.key })).body.code, "REVOKED");
    // Limits fall back to each node's own counters: 3 per node while Redis is away.
    const perNode = async (url: string) => {
      let valid = 0;
      for (let i = 0; i < 5; i++)
        if ((await post(url, "/v1/keys/verify", admin, { key: limited.body.key })).body.valid) valid++;
      return valid;
    };
    assert.deepEqual([await perNode(a), await perNode(b)], [3, 3]);

    await redis.restore();
    // Recovery: once the nodes have reconnected, limits are global again.
    const fresh = await post(a, "/v1/keys", admin, {
      name: "after",
      scopes: [],
      rateLimit: { limit: 4, windowSeconds: 600 },
    });
    await waitFor(async () => {
      const probe = await post(a, "/v1/keys", admin, {
        name: "probe",
        scopes: [],
        rateLimit: { limit: 1, windowSeconds: 600 },
      });
      await post(a, "/v1/keys/verify", admin, { key: probe.body.key });
      // Global again when the second node sees the first node's use.
      return (await post(b, "/v1/keys/verify", admin, { key: probe.body.key })).body.code === "RATE_LIMITED";
    }, "Redis-backed limits to come back");
    let valid = 0;
    for (let i = 0; i < 8; i++) {
      const url = i % 2 === 0 ? a : b;
      if ((await post(url, "/v1/keys/verify", admin, { key: fresh.body.key })).body.valid) valid++;
    }
    assert.equal(valid, 4);
  });
});

describe("faults: one node cut off from Redis", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("a caller key revoked on another node is refused there on the next request", async () => {
    const { redis, redisUrl, env } = await databaseAndProxiedRedis(cleanup);
    const [a, b] = await Promise.all([
      startNode({ ...env, GATEHOUSE_REDIS_URL: "redis://127.0.0.1:6379" }),
      startNode({ ...env, GATEHOUSE_REDIS_URL: redisUrl }),
    ]);
    cleanup.push(() => Promise.all([a.stop(), b.stop()]));
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;

    await redis.cut();
    await sleep(300);
    // B hears nothing now: its cache of caller keys is dropped when the feed drops, and
    // filled again at once, so a key revoked elsewhere kept working here for up to a second.
    for (let round = 0; round < 3; round++) {
      const reader = await post(a.url, "/v1/keys", admin, { name: "reader", scopes: [], permissions: ["keys:read"] });
      const read = () =>
        fetch(`${b.url}/v1/keys?limit=1`, { headers: { authorization: `Bearer ${reader.body.key}` } }).then(
          (r) => r.status,
        );
      assert.equal(await read(), 200);
      assert.equal(await read(), 200);
      assert.equal((await post(a.url, `/v1/keys/${reader.body.id}/revoke`, admin, {})).status, 200);
      assert.equal(await read(), 401, `round ${round}: accepted on B after its revocation on A`);
    }
  });
});

describe("faults: Redis unavailable with GATEHOUSE_RATE_LIMIT_FAIL_CLOSED", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("requests that need a rate limit are refused with 503 problem+json (not 500), and served again once Redis is back", async () => {
    const { redis, redisUrl, env: base } = await databaseAndProxiedRedis(cleanup);
    const env = { ...base, GATEHOUSE_REDIS_URL: redisUrl, GATEHOUSE_RATE_LIMIT_FAIL_CLOSED: "true" };
    const node = await startNode(env);
    cleanup.push(() => node.stop());
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
    const created = await post(node.url, "/v1/keys", admin, { name: "closed", scopes: [] });
    assert.equal(created.status, 201);

    await redis.cut();
    // The limiter's error was not one the routes knew: a bare 500, logged as a bug.
    const verify = await verifyRaw(node.url, admin, created.body.key);
    assert.equal(verify.status, 503);
    assert.match(verify.headers.get("content-type") ?? "", /application\/problem\+json/);
    assert.ok(verify.headers.get("retry-after"));
    const listed = await fetch(`${node.url}/v1/keys?limit=1`, { headers: { authorization: `Bearer ${admin}` } });
    assert.equal(listed.status, 503);
    assert.equal(((await listed.json()) as { status: number }).status, 503);

    await redis.restore();
    await waitFor(
      async () => (await post(node.url, "/v1/keys/verify", admin, { key: created.body.key })).body.valid === true,
      "verification once Redis is back",
    );
  });
});

describe("faults: PostgreSQL unreachable", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("requests fail fast with 503 problem+json, and the node recovers by itself", async () => {
    const { proxy, url } = await proxiedDatabase(cleanup);
    const env = { GATEHOUSE_DATABASE_URL: url, GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY };
    const node = await startNode(env);
    cleanup.push(() => node.stop());
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
    const created = await post(node.url, "/v1/keys", admin, { name: "pg", scopes: [] });
    assert.equal(created.status, 201);

    await proxy.cut();
    const during = await verifyRaw(node.url, admin, created.body.key);
    assert.equal(during.status, 503);
    assert.match(during.headers.get("content-type") ?? "", /application\/problem\+json/);
    const problem = (await during.json()) as { code: string; detail: string };
    assert.equal(problem.code, "STORAGE_UNAVAILABLE");
    assert.ok(!JSON.stringify(problem).includes("ECONNREFUSED"));
    assert.equal((await fetch(`${node.url}/readyz`)).status, 503);
    assert.equal((await fetch(`${node.url}/healthz`)).status, 200);

    await proxy.restore();
    await waitFor(async () => (await fetch(`${node.url}/readyz`)).status === 200, "readiness after PostgreSQL returns");
    assert.equal((await post(node.url, "/v1/keys/verify", admin, { key: created.body.key })).body.valid, true);
  });
});

describe("faults: PostgreSQL connections cut under write load", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("the node stays up, answers 201 or 503 (never 500), and writes again once connections return", async () => {
    const database = await createTestDatabase();
    cleanup.push(() => database.drop());
    // A limit the workers cannot reach: the answers counted are the database's.
    const env = {
      GATEHOUSE_DATABASE_URL: database.url,
      GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY,
      GATEHOUSE_DEFAULT_RATE_LIMIT: "1000000/60",
    };
    const node = await startNode(env);
    cleanup.push(() => node.stop());
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
    // What a server restart or failover does to a node's connections, some of them
    // checked out mid-transaction: the pool saw errors only on idle ones, and a
    // connection ended while checked out crashed the process within a few rounds.
    const killer = new pg.Client({ connectionString: database.url });
    await killer.connect();
    cleanup.push(() => killer.end());
    const statuses = new Map<string, number>();
    let stop = false;
    const worker = async () => {
      while (!stop) {
        const status = await post(node.url, "/v1/keys", admin, { name: "cut", scopes: [] }).then(
          (r) => String(r.status),
          (error: Error & { cause?: { code?: string } }) => `no answer (${error.cause?.code ?? error.message})`,
        );
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    };
    const workers = Array.from({ length: 4 }, worker);
    for (let round = 0; round < 30 && node.child.exitCode === null; round++) {
      await killer.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
      await sleep(100);
    }
    stop = true;
    await Promise.all(workers);
    assert.equal(node.child.exitCode, null, `the node exited:\n${node.logs().slice(-3000)}`);
    assert.deepEqual(
      [...statuses.keys()].filter((status) => status !== "201" && status !== "503"),
      [],
      JSON.stringify(Object.fromEntries(statuses)),
    );
    assert.ok((statuses.get("201") ?? 0) > 0);
    await waitFor(
      async () => (await post(node.url, "/v1/keys", admin, { name: "after", scopes: [] })).status === 201,
      "writes after the cuts",
    );
  });
});

describe("faults: a node killed with SIGKILL under load (SQLite)", () => {
  test("every acknowledged write is there after restart, with its audit event, and nothing half-written", async () => {
    const dir = tempDir();
    try {
      const env = { GATEHOUSE_DATA_DIR: dir };
      const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
      let node: GatehouseNode = await startNode(env);
      const acknowledged: string[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          try {
            const r = await post(node.url, "/v1/keys", admin, { name: "load", scopes: ["s"] });
            if (r.status === 201) acknowledged.push(r.body.id);
          } catch {
            return; // the node is gone
          }
        }
      };
      const workers = Array.from({ length: 8 }, worker);
      await waitFor(async () => acknowledged.length >= 100, "some acknowledged writes");
      node.child.kill("SIGKILL");
      stop = true;
      await Promise.all(workers);
      assert.equal(await node.exited, "SIGKILL");

      node = await startNode(env);
      try {
        for (const id of acknowledged) {
          const r = await fetch(`${node.url}/v1/keys/${id}`, { headers: { authorization: `Bearer ${admin}` } });
          assert.equal(r.status, 200, id);
          const key = (await r.json()) as { scopes: string[]; hint: string };
          assert.deepEqual(key.scopes, ["s"]);
        }
      } finally {
        await node.stop();
      }
      // Straight from the file: every key has its creation event, and every event its key.
      const db = new DatabaseSync(join(dir, "gatehouse.db"));
      const orphans = db
        .prepare(`SELECT count(*) AS n FROM api_keys k WHERE NOT EXISTS
                  (SELECT 1 FROM audit_events e WHERE e.action = 'key.create' AND e.target_id = k.id)`)
        .get() as { n: number };
      const ghosts = db
        .prepare(`SELECT count(*) AS n FROM audit_events e WHERE e.action = 'key.create'
                  AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE k.id = e.target_id)`)
        .get() as { n: number };
      const integrity = db.prepare("PRAGMA integrity_check").get() as { integrity_check: string };
      db.close();
      assert.equal(orphans.n, 0);
      assert.equal(ghosts.n, 0);
      assert.equal(integrity.integrity_check, "ok");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("graceful shutdown on SIGTERM (SQLite)", () => {
  test("finishes in-flight requests, then flushes usage counters before exiting 0", async () => {
    const dir = tempDir();
    try {
      const env = { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_USAGE_FLUSH_MS: "60000" };
      const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
      const node = await startNode(env);
      const created = await post(node.url, "/v1/keys", admin, { name: "term", scopes: [] });
      // Requests already sent when the signal arrives all get their answer.
      const inFlight = Array.from({ length: 40 }, () =>
        post(node.url, "/v1/keys/verify", admin, { key: created.body.key }),
      );
      // Signal as soon as the first answer is back: the rest of the batch is in the server.
      await Promise.race(inFlight);
      node.child.kill("SIGTERM");
      const answers = await Promise.allSettled(inFlight);
      const answered = answers.filter((a) => a.status === "fulfilled" && a.value.body.valid === true).length;
      assert.equal(await node.exited, 0);
      // Counting is buffered for 60 s here, so only the shutdown flush can have written it.
      const db = new DatabaseSync(join(dir, "gatehouse.db"));
      const row = db
        .prepare("SELECT coalesce(sum(count), 0) AS n FROM key_usage WHERE key_id = ?")
        .get(created.body.id) as {
        n: number;
      };
      db.close();
      assert.ok(answered > 0);
      assert.equal(row.n, answered);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a stalled request during shutdown (SQLite)", () => {
  test("is cut after the request timeout, and the shutdown still flushes and exits 0", {
    timeout: 120_000,
  }, async () => {
    const dir = tempDir();
    const socket = new Socket();
    try {
      const env = { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_USAGE_FLUSH_MS: "60000" };
      const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
      const node = await startNode(env);
      const created = await post(node.url, "/v1/keys", admin, { name: "stalled", scopes: [] });
      assert.equal((await post(node.url, "/v1/keys/verify", admin, { key: created.body.key })).body.valid, true);
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.connect(Number(new URL(node.url).port), "127.0.0.1", () => resolve());
      });
      socket.on("error", () => {});
      socket.write(
        "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
      );
      await waitFor(async () => (node.logs().match(/incoming request/g) ?? []).length >= 3, "the stalled request");
      node.child.kill("SIGTERM");
      // Node stops timing requests out once the server closes: this hung for ever (the timeout
      // above turns a return of it into a failure, not a stuck run).
      assert.equal(await node.exited, 0);
      const db = new DatabaseSync(join(dir, "gatehouse.db"));
      const row = db
        .prepare("SELECT coalesce(sum(count), 0) AS n FROM key_usage WHERE key_id = ?")
        .get(created.body.id) as { n: number };
      db.close();
      assert.equal(row.n, 1, "the usage count was flushed after the cut");
    } finally {
      socket.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a log reader that stops reading (SQLite)", () => {
  test("costs log lines, not the service: requests are still answered, and SIGTERM still ends the process", {
    timeout: 120_000,
  }, async () => {
    const dir = tempDir();
    try {
      const node = await startNode({ GATEHOUSE_DATA_DIR: dir });
      // Nobody reads the server's stdout from now on (a log shipper that hangs): the pipe
      // fills after some 100 KB of request lines.
      node.child.stdout?.pause();
      const healthz = () =>
        fetch(`${node.url}/healthz`, { signal: AbortSignal.timeout(20_000) }).then(
          (r) => r.status,
          () => 0,
        );
      for (let i = 0; i < 600; i++) assert.equal(await healthz(), 200, `request ${i}`);
      // With pino's synchronous default, every request now waited on the full pipe.
      const later = await Promise.all(Array.from({ length: 20 }, healthz));
      assert.deepEqual(later, Array(20).fill(200));
      node.child.kill("SIGTERM");
      // It ends (it hung with its port closed until SIGKILL).
      assert.equal(typeof (await node.exited), "number");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a second signal during shutdown (SQLite)", () => {
  test("ends a shutdown held up by a request in flight: exit 1 at once, said in the log", {
    timeout: 120_000,
  }, async () => {
    const dir = tempDir();
    const socket = new Socket();
    try {
      const env = { GATEHOUSE_DATA_DIR: dir };
      const node = await startNode(env);
      const { port } = new URL(node.url);
      // A request whose body never arrives: in flight until the 30 s request timeout.
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.connect(Number(port), "127.0.0.1", () => resolve());
      });
      socket.write(
        "POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
      );
      await waitFor(async () => node.logs().includes("incoming request"), "the request reaching the server");
      // Two signals back to back, as one Ctrl-C under npm start arrives (from the terminal
      // and forwarded by npm): the repeat is the same request to stop and changes nothing.
      node.child.kill("SIGTERM");
      node.child.kill("SIGINT");
      await waitFor(async () => node.logs().includes("shutting down"), "the shutdown to start");
      await sleep(2500);
      assert.equal(node.child.exitCode, null, "still draining after the repeated signal");
      // A later one: without it the process would wait for that request (30 s) and exit 0.
      node.child.kill("SIGINT");
      assert.equal(await node.exited, 1);
      assert.match(node.logs(), /second signal while shutting down: exiting now/);
    } finally {
      socket.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("graceful shutdown with storage unreachable (PostgreSQL)", { skip: !withPostgres }, () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const step of cleanup.reverse()) await step();
  });

  test("usage counts that cannot be written are reported lost, and the exit code says so", async () => {
    const { proxy, url } = await proxiedDatabase(cleanup);
    const env = {
      GATEHOUSE_DATABASE_URL: url,
      GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY,
      GATEHOUSE_USAGE_FLUSH_MS: "60000",
    };
    const node = await startNode(env);
    cleanup.push(() => node.stop());
    const admin = JSON.parse((await runCli(["init", "--json"], env)).stdout).adminKey as string;
    const created = await post(node.url, "/v1/keys", admin, { name: "lost", scopes: [] });
    for (let i = 0; i < 3; i++) {
      assert.equal((await post(node.url, "/v1/keys/verify", admin, { key: created.body.key })).body.valid, true);
    }
    // Held in memory for 60 s; the shutdown flush is their only chance, and it fails.
    await proxy.cut();
    node.child.kill("SIGTERM");
    const code = await node.exited;
    const lines = node
      .logs()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { level: number; msg: string });
    const lost = lines.find((line) => line.level >= 50 && /usage counts .*lost/.test(line.msg));
    assert.ok(lost, `an error line says the counts are lost:\n${node.logs().slice(-2000)}`);
    // Of two keys: the one verified and the admin key that called (each once, however its
    // counts are held).
    assert.equal((lost as unknown as { keys: number }).keys, 2);
    // Exit 0 told the orchestrator all was well while counts were thrown away.
    assert.equal(code, 1);
  });
});
