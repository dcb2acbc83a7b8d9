/**
 * Issue 4's figures: Gatehouse on PostgreSQL + Redis (a database created for the run and
 * dropped after it, a Redis database of its own), and one node against two.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { combined, type LoadOptions, type Measurement, measureTogether, type Template } from "./load.ts";
import { median, typical } from "./paired.ts";
import { type ServerProcess, startGatehouse } from "./servers.ts";

const ADMIN_URL = process.env.BENCH_POSTGRES_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL = process.env.BENCH_REDIS_URL ?? "redis://127.0.0.1:6379/11";

export interface PostgresEnvironment {
  databaseUrl: string;
  env: NodeJS.ProcessEnv;
  dataDir: string;
  drop(): Promise<void>;
}

/** A database of our own (created here, dropped by `drop`), Redis, and one master key for every node. */
export async function createPostgresEnvironment(): Promise<PostgresEnvironment> {
  const name = `gatehouse_bench_${process.pid}_${Date.now()}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const databaseUrl = url.toString();
  const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-pg-"));
  return {
    databaseUrl,
    dataDir,
    env: {
      GATEHOUSE_DATABASE_URL: databaseUrl,
      GATEHOUSE_REDIS_URL: REDIS_URL,
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString("base64"),
      // Every node the same issuer, as a deployment on a shared store must have (and
      // `serve` warns without it).
      GATEHOUSE_ISSUER: "http://127.0.0.1:8080",
    },
    async drop() {
      rmSync(dataDir, { recursive: true, force: true });
      const client = new pg.Client({ connectionString: ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

export async function startPostgresNode(
  environment: PostgresEnvironment,
  placement: "server-core" | "any-core",
  extraEnv: NodeJS.ProcessEnv = {},
): Promise<ServerProcess> {
  return startGatehouse(environment.dataDir, { env: { ...environment.env, ...extraEnv }, placement });
}

/** Share of all cores busy (any process) between two readings of /proc/stat. */
export function machineCpu(): () => number | null {
  const read = () => {
    try {
      const fields = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
      const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
      return { idle, total: fields.reduce((sum, x) => sum + x, 0) };
    } catch {
      return null;
    }
  };
  const before = read();
  return () => {
    const after = read();
    if (!before || !after || after.total === before.total) return null;
    return 1 - (after.idle - before.idle) / (after.total - before.total);
  };
}

export interface NodesMeasurement {
  nodes: number;
  result: Measurement;
  /** Share of the whole machine busy during the measurement (servers, PostgreSQL, Redis, load generator, others). */
  machineBusy: number | null;
}

export interface ClusterResult {
  route: string;
  oneNode: Measurement;
  twoNodes: Measurement;
  machineBusy: { oneNode: number | null; twoNodes: number | null };
  /** Two nodes ÷ one node, median of paired rounds. */
  ratio: { requestsPerSecond: number; cpuMicrosPerRequest: number | null };
  rounds: NodesMeasurement[];
}

/**
 * One node against two on the same database: the same total connections, either all to
 * one node or split over both by two autocannon instances at once, summed. Servers and the
 * load generator may use any core (2 cores: they, PostgreSQL and Redis share them).
 */
export async function measureNodes(
  nodes: [ServerProcess, ServerProcess],
  options: {
    route: string;
    template: () => Template;
    load: LoadOptions;
    rounds: number;
    warmupSeconds: number;
    beforeEach?: () => Promise<void>;
    log: (line: string) => void;
  },
): Promise<ClusterResult> {
  const [a, b] = nodes;
  const half = { ...options.load, connections: Math.max(1, Math.floor(options.load.connections / 2)) };
  const one = async (load: LoadOptions) =>
    measureTogether([{ target: { url: a.url, pids: [a.pid] }, template: options.template(), options: load }]);
  const two = async (load: LoadOptions) =>
    measureTogether(
      [a, b].map((node) => ({
        target: { url: node.url, pids: [a.pid, b.pid] },
        template: options.template(),
        options: load,
      })),
    );
  const before = options.beforeEach ?? (async () => {});
  await before();
  await one({ ...options.load, durationSeconds: options.warmupSeconds });
  await before();
  await two({ ...half, durationSeconds: options.warmupSeconds });
  const rounds: NodesMeasurement[] = [];
  for (let round = 1; round <= options.rounds; round++) {
    await before();
    let busy = machineCpu();
    const single = combined(await one(options.load));
    rounds.push({ nodes: 1, result: single, machineBusy: busy() });
    await before();
    busy = machineCpu();
    const double = combined(await two(half));
    rounds.push({ nodes: 2, result: double, machineBusy: busy() });
    options.log(
      `  ${options.route} round ${round}: one node ${single.requestsPerSecond.toFixed(0)} req/s ${single.cpuMicrosPerRequest?.toFixed(0)} µs/req, two nodes ${double.requestsPerSecond.toFixed(0)} req/s ${double.cpuMicrosPerRequest?.toFixed(0)} µs/req (non-2xx ${single.non2xx + double.non2xx})`,
    );
  }
  const of = (count: number) => rounds.filter((r) => r.nodes === count);
  const pairs = of(1).map((single, i) => [single, of(2)[i] as NodesMeasurement] as const);
  const busyOf = (count: number) => {
    const values = of(count)
      .map((r) => r.machineBusy)
      .filter((x): x is number => x !== null);
    return values.length ? median(values) : null;
  };
  const cpuPairs = pairs.filter(([s, d]) => s.result.cpuMicrosPerRequest && d.result.cpuMicrosPerRequest);
  return {
    route: options.route,
    oneNode: typical(of(1).map((r) => r.result)),
    twoNodes: typical(of(2).map((r) => r.result)),
    machineBusy: { oneNode: busyOf(1), twoNodes: busyOf(2) },
    ratio: {
      requestsPerSecond: median(pairs.map(([s, d]) => d.result.requestsPerSecond / s.result.requestsPerSecond)),
      cpuMicrosPerRequest: cpuPairs.length
        ? median(cpuPairs.map(([s, d]) => (d.result.cpuMicrosPerRequest ?? 0) / (s.result.cpuMicrosPerRequest ?? 1)))
        : null,
    },
    rounds,
  };
}
