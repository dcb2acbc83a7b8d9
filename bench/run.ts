/**
 * `npm run bench`: Gatehouse against bare Fastify routes on loopback, in one run. See
 * docs/benchmarks.md.
 *
 * Parts (BENCH_PARTS, comma-separated, default all):
 * - keys: POST /v1/keys/verify on SQLite with BENCH_KEYS keys stored (default 1000,1000000).
 * - auth: on SQLite, sign-ins per second against the argon2id limit with another route's
 *   p99 alongside, refresh rotations per second, and a route guarded by the SDK's JWT
 *   verification against the same route unguarded (first-seen and seen-before tokens).
 * - postgres: the same verify (BENCH_PG_KEYS keys, default 1,000,000), sign-in and refresh
 *   on PostgreSQL + Redis, as ratios to the bare route and to the SQLite figures.
 * - cluster: one node against two on the same PostgreSQL + Redis.
 *
 * Overrides: BENCH_DURATION (seconds per measurement, default 5), BENCH_ROUNDS (paired
 * rounds, default 3), BENCH_WARMUP (seconds, default 2), BENCH_CONNECTIONS (default 50),
 * BENCH_SIGNIN_DURATION (default 6), BENCH_NODE_ARGS (extra node flags for the servers,
 * e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_GATEHOUSE_DIR (serve from another
 * checkout, e.g. a git worktree of an older commit, for before/after), BENCH_POSTGRES_URL
 * (an existing database to connect to for CREATE/DROP DATABASE, default
 * postgres://postgres@127.0.0.1:5432/test), BENCH_REDIS_URL (default redis://127.0.0.1:6379/11),
 * BENCH_RESULTS_NAME (file name under bench/results/, default "latest"). GATEHOUSE_* variables
 * reach every Gatehouse server (e.g. GATEHOUSE_JWT_ALG=EdDSA; the guarded API follows it).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import {
  createBenchUser,
  LOGIN_ENV,
  measureArgonLimit,
  measureRefresh,
  measureSignIns,
  measureSigningLimits,
  type RefreshResult,
  refreshTemplate,
  type SignInResult,
  type SigningLimit,
  signIn,
  signInMany,
} from "./auth-part.ts";
import { type JwtModeResult, measureJwtGuard } from "./jwt-part.ts";
import { type LoadOptions, requestTemplate, type Template } from "./load.ts";
import { type PairedResult, pairedRounds, unpairedRatio } from "./paired.ts";
import {
  createPostgresEnvironment,
  measureNodes,
  type PostgresEnvironment,
  startPostgresNode,
} from "./postgres-part.ts";
import {
  type AuthResults,
  type BenchResults,
  type KeyCountResult,
  type PostgresResults,
  summarise,
  type WorkCeiling,
  writeResults,
} from "./report.ts";
import { type GeneratedKeys, generateKeys, SEED_SCOPES, seed, seedPostgres } from "./seed.ts";
import {
  hasTaskset,
  initStore,
  memoryOf,
  pinSelf,
  placeServer,
  type ServerProcess,
  startBaseline,
  startGatehouse,
  startScript,
} from "./servers.ts";

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw.replaceAll("_", ""));
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive whole number`);
  return value;
}

const PARTS = ["keys", "auth", "postgres", "cluster"] as const;
type Part = (typeof PARTS)[number];
const parts = new Set(
  (process.env.BENCH_PARTS ?? PARTS.join(",")).split(",").map((entry) => {
    const part = entry.trim();
    if (!PARTS.includes(part as Part)) throw new TypeError(`BENCH_PARTS: "${part}" is not one of ${PARTS.join(", ")}`);
    return part as Part;
  }),
);
const keyCounts = (process.env.BENCH_KEYS ?? "1000,1000000").split(",").map((entry) => {
  const value = Number(entry.replaceAll("_", "").trim());
  if (!Number.isInteger(value) || value < 1) throw new TypeError("BENCH_KEYS must list positive whole numbers");
  return value;
});
const pgKeyCount = envInt("BENCH_PG_KEYS", 1_000_000);
const load: LoadOptions = {
  connections: envInt("BENCH_CONNECTIONS", 50),
  pipelining: 1,
  durationSeconds: envInt("BENCH_DURATION", 5),
};
const rounds = envInt("BENCH_ROUNDS", 3);
const warmupSeconds = envInt("BENCH_WARMUP", 2);
const signInSeconds = envInt("BENCH_SIGNIN_DURATION", 6);
const signInRounds = envInt("BENCH_SIGNIN_ROUNDS", 3);
const started = new Date();
const loadBefore = loadavg()[0] as number;
const pinned = pinSelf();
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
log(
  `bench: parts ${[...parts].join(", ")}; ${rounds} round(s) of ${load.durationSeconds}s; ${load.connections} connections; taskset ${pinned ? "on" : "off"}`,
);
const paired = { load, rounds, warmupSeconds, log };
/** What the work-ceiling reference adds to the bare route per request. */
const EXTRA_WORK_MICROS = 5;

async function checkVerify(server: ServerProcess, template: Template, expectValid: boolean) {
  const request = template.setupRequest?.({}) ?? {};
  const response = await fetch(`${server.url}${template.path}`, {
    method: template.method,
    headers: template.headers ?? {},
    body: request.body ?? "",
  });
  const body = (await response.json()) as { valid?: unknown };
  if (response.status !== 200 || (expectValid && body.valid !== true)) {
    throw new Error(`sanity check failed on ${server.url}: ${response.status} ${JSON.stringify(body)}`);
  }
}

/** Generated keys, kept for the PostgreSQL part when it uses the same count. */
const generated = new Map<number, GeneratedKeys>();
function keysFor(count: number): GeneratedKeys {
  const existing = generated.get(count);
  if (existing) return existing;
  log(`generating ${count} keys…`);
  const made = generateKeys(count);
  if (count === pgKeyCount && (parts.has("postgres") || parts.has("cluster"))) generated.set(count, made);
  return made;
}

/**
 * Sign-in, refresh (and on SQLite the guarded route) on one running Gatehouse. Returns
 * the access tokens the refresh run produced.
 */
async function authFigures(
  baseline: ServerProcess,
  gatehouse: ServerProcess,
  options: { adminKey: string; email: string; label: string; limitEnv: NodeJS.ProcessEnv; collectTokens: boolean },
) {
  await createBenchUser(gatehouse.url, options.adminKey, options.email);
  const first = await signIn(gatehouse.url, options.email);
  // Sign-ins use the whole machine (libuv's 4 threads on 2 cores), and so does the
  // measurement of the hashing limit they are compared with. Paired rounds, as for the
  // verify route: the limit is measured right before each round of sign-ins, so a host
  // that changes speed during the run moves both; the median round is reported.
  const rounds: SignInResult[] = [];
  for (let round = 1; round <= signInRounds; round++) {
    log(`${options.label}: argon2id limit (any core), round ${round}…`);
    const limit = await measureArgonLimit("any-core", options.limitEnv);
    log(
      `  one hash ${limit.hashMs.toFixed(1)} ms; ${limit.threads} at once: ${limit.hashesPerSecond.toFixed(1)} hashes/s`,
    );
    pinSelf("any-core");
    placeServer(gatehouse.pid, "any-core");
    try {
      rounds.push(
        await measureSignIns(baseline, gatehouse, {
          email: options.email,
          accessToken: first.access_token,
          limit,
          durationSeconds: signInSeconds,
          connections: 16,
          log,
        }),
      );
    } finally {
      placeServer(gatehouse.pid, "server-core");
      pinSelf();
    }
  }
  const byShare = [...rounds].sort((a, b) => a.ofLimit - b.ofLimit);
  const signIns: SignInResult = {
    ...(byShare[byShare.length >> 1] as SignInResult),
    roundsOfLimit: rounds.map((round) => round.ofLimit),
  };
  const { refresh, accessTokens } = await refreshFigures(baseline, gatehouse, options);
  return { signIns, refresh, accessTokens };
}

/**
 * Refresh rotations. They use the whole machine: the server is several threads (signatures
 * on libuv's pool, SQLite's WAL checkpoints on a worker of their own). The bare route stays
 * on its core; its figures are a reference, not a target.
 */
async function refreshFigures(
  baseline: ServerProcess,
  gatehouse: ServerProcess,
  options: { email: string; label: string; collectTokens: boolean },
): Promise<{ refresh: RefreshResult; accessTokens: string[] }> {
  log(`${options.label}: refresh rotations (any core)…`);
  const pool: string[] = [];
  const topUp = async () => {
    const missing = load.connections + 10 - pool.length;
    if (missing > 0)
      pool.push(...(await signInMany(gatehouse.url, options.email, missing)).map((p) => p.refresh_token));
  };
  const accessTokens: string[] = [];
  pinSelf("any-core");
  placeServer(gatehouse.pid, "any-core");
  try {
    const refresh = await measureRefresh(baseline, gatehouse, {
      pool,
      topUp,
      ...(options.collectTokens ? { accessTokens } : {}),
      ...paired,
      label: `${options.label} refresh`,
    });
    return { refresh, accessTokens };
  } finally {
    placeServer(gatehouse.pid, "server-core");
    pinSelf();
  }
}

/**
 * The ceiling of refresh rotations is the signature each one makes. Measured here for
 * every algorithm; then rotations are measured again on servers that sign with EdDSA (the
 * fastest asymmetric signer; RS256, the default, verifies fastest) and with HS256 (an
 * HMAC: what a rotation costs with the signature nearly free), and the SDK's guard with
 * first-seen HS256 tokens. The table then shows how far each algorithm takes a rotation
 * and a first check on this machine.
 */
async function signingFigures(baseline: ServerProcess): Promise<{
  signingLimits: SigningLimit[];
  refreshOtherAlgs: Array<{ alg: string; refresh: RefreshResult }>;
  jwtOtherAlgs: JwtModeResult[];
}> {
  log("signing limit per algorithm (any core)…");
  const signingLimits = await measureSigningLimits("any-core");
  log(`  ${signingLimits.map((l) => `${l.alg} ${Math.round(l.signaturesPerSecond)}/s`).join(", ")}`);
  const refreshOtherAlgs: Array<{ alg: string; refresh: RefreshResult }> = [];
  const jwtOtherAlgs: JwtModeResult[] = [];
  // A fixed, obviously-bench secret: the store is thrown away with the run.
  const hs256Secret = Buffer.alloc(32, "gatehouse-bench").toString("base64url");
  for (const alg of ["EdDSA", "HS256"] as const) {
    const env = {
      ...LOGIN_ENV,
      GATEHOUSE_JWT_ALG: alg,
      ...(alg === "HS256" ? { GATEHOUSE_JWT_HS256_SECRET: hs256Secret } : {}),
    };
    const dataDir = mkdtempSync(join(tmpdir(), `gatehouse-bench-${alg.toLowerCase()}-`));
    const adminKey = initStore(dataDir, env);
    const gatehouse = await startGatehouse(dataDir, { env });
    try {
      const email = `bench-${alg.toLowerCase()}@example.com`;
      await createBenchUser(gatehouse.url, adminKey, email);
      const collectTokens = alg === "HS256";
      const { refresh, accessTokens } = await refreshFigures(baseline, gatehouse, {
        email,
        label: `sqlite ${alg}`,
        collectTokens,
      });
      refreshOtherAlgs.push({ alg, refresh });
      if (collectTokens) {
        jwtOtherAlgs.push(
          ...(await measureJwtGuard({
            issuer: gatehouse.url,
            audience: gatehouse.url,
            jwksUri: `${gatehouse.url}/.well-known/jwks.json`,
            tokens: accessTokens,
            ...paired,
            alg,
            hs256Secret,
            modes: ["first-seen"],
          })),
        );
      }
    } finally {
      await gatehouse.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
  return { signingLimits, refreshOtherAlgs, jwtOtherAlgs };
}

/** A part that fails (e.g. a server killed from outside) is reported, and the run goes on. */
const failures: Array<{ part: string; error: string }> = [];
async function attempt(part: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (error) {
    failures.push({ part, error: String((error as Error)?.stack ?? error) });
    log(`${part}: FAILED: ${(error as Error)?.message ?? error}`);
  }
}

const baseline = await startBaseline();
const keyResults: KeyCountResult[] = [];
let workCeiling: WorkCeiling | null = null;
let frameworkFloor: PairedResult | null = null;
let auth: AuthResults | null = null;
let postgres: PostgresResults | null = null;
/** Databases created by this run, dropped at its end whatever happens. */
const environments: PostgresEnvironment[] = [];
try {
  if (parts.has("keys")) {
    for (const count of keyCounts)
      await attempt(`keys ${count}`, async () => {
        const data = await seed(keysFor(count));
        log(`seeded ${count} keys into SQLite in ${data.seedSeconds.toFixed(1)}s`);
        const gatehouse = await startGatehouse(data.dataDir);
        try {
          const template = requestTemplate(data.serviceKey, data.keys, SEED_SCOPES.slice(0, 1));
          await checkVerify(baseline, template, false);
          await checkVerify(gatehouse, template, true);
          const result = await pairedRounds(
            { reference: { target: baseline, template }, subject: { target: gatehouse, template } },
            { ...paired, label: `verify ${count} keys` },
          );
          await checkVerify(gatehouse, template, true);
          const memory = memoryOf(gatehouse.pid);
          keyResults.push({
            keys: count,
            seedSeconds: data.seedSeconds,
            baseline: result.reference,
            gatehouse: result.subject,
            ratio: result.ratio,
            rounds: { baseline: result.rounds.reference, gatehouse: result.rounds.subject },
            gatehouseRssMB: memory?.rssMB ?? null,
            gatehousePeakRssMB: memory?.peakRssMB ?? null,
          });
        } finally {
          await gatehouse.stop();
          rmSync(data.dataDir, { recursive: true, force: true });
        }
      });
  }

  if (parts.has("keys"))
    await attempt("work ceiling", async () => {
      // The yardstick for the verify ratio: the same bare route spinning EXTRA_WORK_MICROS
      // more per request, measured like Gatehouse. On a 2-core VM the extra work costs
      // more than itself (the load generator idles more, and every response then wakes
      // it), so this ratio is the best any server doing that much more can show here.
      const spinning = await startBaseline(EXTRA_WORK_MICROS);
      try {
        const template = requestTemplate("unused", ["unused"], SEED_SCOPES.slice(0, 1));
        const result = await pairedRounds(
          { reference: { target: baseline, template }, subject: { target: spinning, template } },
          { ...paired, label: `bare route + ${EXTRA_WORK_MICROS} µs` },
        );
        workCeiling = { extraWorkMicros: EXTRA_WORK_MICROS, ...result };
      } finally {
        await spinning.stop();
      }
    });

  if (parts.has("keys"))
    await attempt("framework floor", async () => {
      // The verify route as Gatehouse's Fastify settings, hooks and schemas make it, with
      // none of Gatehouse's work (bench/framework-floor-server.ts): what the framework
      // alone takes of the verify target's budget on this machine.
      const floor = await startScript("bench/framework-floor-server.ts", {});
      try {
        const template = requestTemplate("unused", [`gate_${"0".repeat(49)}`], SEED_SCOPES.slice(0, 1));
        frameworkFloor = await pairedRounds(
          { reference: { target: baseline, template }, subject: { target: floor, template } },
          { ...paired, label: "framework floor" },
        );
      } finally {
        await floor.stop();
      }
    });

  if (parts.has("auth"))
    await attempt("auth", async () => {
      const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-auth-"));
      const adminKey = initStore(dataDir, LOGIN_ENV);
      const gatehouse = await startGatehouse(dataDir, { env: LOGIN_ENV });
      try {
        const figures = await authFigures(baseline, gatehouse, {
          adminKey,
          email: "bench-sqlite@example.com",
          label: "sqlite",
          limitEnv: LOGIN_ENV,
          collectTokens: true,
        });
        log(`jwt guard: ${figures.accessTokens.length} distinct access tokens from the refresh run`);
        const jwt = await measureJwtGuard({
          issuer: gatehouse.url,
          audience: gatehouse.url,
          jwksUri: `${gatehouse.url}/.well-known/jwks.json`,
          tokens: figures.accessTokens,
          ...paired,
        });
        const signing = await signingFigures(baseline);
        auth = { signIns: figures.signIns, refresh: figures.refresh, jwt, ...signing };
      } finally {
        await gatehouse.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    });

  if (parts.has("postgres") || parts.has("cluster"))
    await attempt("postgres setup", async () => {
      const pgEnvironment = await createPostgresEnvironment();
      environments.push(pgEnvironment);
      const keys = keysFor(pgKeyCount);
      const seedSeconds = await seedPostgres(pgEnvironment.databaseUrl, keys);
      generated.delete(pgKeyCount);
      log(`seeded ${pgKeyCount} keys into PostgreSQL in ${seedSeconds.toFixed(1)}s`);
      const adminKey = initStore(pgEnvironment.dataDir, pgEnvironment.env);
      const verify = requestTemplate(keys.serviceKey, keys.keys, SEED_SCOPES.slice(0, 1));
      const email = "bench-postgres@example.com";
      const pgResults: PostgresResults = {
        keys: pgKeyCount,
        seedSeconds,
        verify: null,
        signIns: null,
        refresh: null,
        cluster: [],
      };
      postgres = pgResults;
      const node = await startPostgresNode(pgEnvironment, "server-core", LOGIN_ENV);
      try {
        await checkVerify(node, verify, true);
        await createBenchUser(node.url, adminKey, email);
        if (parts.has("postgres"))
          await attempt("postgres", async () => {
            const result = await pairedRounds(
              { reference: { target: baseline, template: verify }, subject: { target: node, template: verify } },
              { ...paired, label: `postgres verify ${pgKeyCount} keys` },
            );
            const sqlite = keyResults.find((r) => r.keys === pgKeyCount);
            pgResults.verify = { ...result, toSqlite: sqlite ? unpairedRatio(sqlite.gatehouse, result.subject) : null };
            const figures = await authFigures(baseline, node, {
              adminKey,
              email: "bench-postgres-auth@example.com",
              label: "postgres",
              limitEnv: { ...LOGIN_ENV, ...pgEnvironment.env },
              collectTokens: false,
            });
            pgResults.signIns = figures.signIns;
            pgResults.refresh = figures.refresh;
          });
      } finally {
        await node.stop();
      }
      if (parts.has("cluster"))
        await attempt("cluster", async () => {
          log("cluster: one node against two (any core)…");
          pinSelf("any-core");
          const a = await startPostgresNode(pgEnvironment, "any-core", LOGIN_ENV);
          const b = await startPostgresNode(pgEnvironment, "any-core", LOGIN_ENV);
          try {
            // At most two rounds: the machine is saturated here either way, and the run stays short.
            const cluster = { load, rounds: Math.min(rounds, 2), warmupSeconds, log };
            pgResults.cluster.push(
              await measureNodes([a, b], { ...cluster, route: "POST /v1/keys/verify", template: () => verify }),
            );
            const pool: string[] = [];
            pgResults.cluster.push(
              await measureNodes([a, b], {
                ...cluster,
                route: "POST /auth/refresh",
                template: () => refreshTemplate(pool),
                beforeEach: async () => {
                  const missing = load.connections + 10 - pool.length;
                  if (missing > 0) pool.push(...(await signInMany(a.url, email, missing)).map((p) => p.refresh_token));
                },
              }),
            );
          } finally {
            await a.stop();
            await b.stop();
            pinSelf();
          }
        });
    });
} finally {
  await baseline.stop();
  for (const environment of environments) await environment.drop();
}

const report: BenchResults = {
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  parts: [...parts],
  load: { ...load, rounds, warmupSeconds, signInSeconds, signInRounds, pinnedCores: pinned && hasTaskset },
  machineLoad: { before: loadBefore, after: loadavg()[0] as number },
  results: keyResults,
  workCeiling,
  frameworkFloor,
  auth,
  postgres,
  failures,
};
const summary = summarise(report);
writeResults(summary, process.env.BENCH_RESULTS_NAME ?? "latest");
log(summary.markdown);
