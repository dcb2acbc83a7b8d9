/**
 * `npm run bench`: POST /v1/keys/verify on Gatehouse against a bare Fastify route, on
 * loopback, with 1,000 and 1,000,000 keys stored. See docs/benchmarks.md.
 *
 * Overrides: BENCH_DURATION (seconds per measurement, default 8), BENCH_KEYS (comma-
 * separated key counts, default 1000,1000000), BENCH_CONNECTIONS (default 50),
 * BENCH_ROUNDS (baseline/Gatehouse pairs per key count, default 4), BENCH_WARMUP
 * (seconds, default 3), BENCH_NODE_ARGS (extra node flags for the servers, e.g.
 * "--cpu-prof --cpu-prof-dir=/tmp/prof"), BENCH_GATEHOUSE_DIR (run the Gatehouse server
 * of another checkout, e.g. a git worktree of an older commit, for before/after).
 */
import { rmSync } from "node:fs";
import { loadavg } from "node:os";
import { type LoadOptions, type Measurement, measure, requestTemplate } from "./load.ts";
import { type BenchResults, type KeyCountResult, summarise, writeResults } from "./report.ts";
import { SEED_SCOPES, seed } from "./seed.ts";
import { hasTaskset, memoryOf, pinSelf, type ServerProcess, startBaseline, startGatehouse } from "./servers.ts";

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive whole number`);
  return value;
}

const keyCounts = (process.env.BENCH_KEYS ?? "1000,1000000").split(",").map((entry) => {
  const value = Number(entry.replaceAll("_", "").trim());
  if (!Number.isInteger(value) || value < 1) throw new TypeError("BENCH_KEYS must list positive whole numbers");
  return value;
});
const load: LoadOptions = {
  connections: envInt("BENCH_CONNECTIONS", 50),
  pipelining: 1,
  durationSeconds: envInt("BENCH_DURATION", 8),
};
const rounds = envInt("BENCH_ROUNDS", 4);
const warmupSeconds = envInt("BENCH_WARMUP", 3);
const started = new Date();
const loadBefore = loadavg()[0] as number;
const pinned = pinSelf();
const log = (line: string) => process.stderr.write(`${line}\n`);
log(
  `bench: keys ${keyCounts.join(", ")}; ${rounds} round(s) of ${load.durationSeconds}s; ${load.connections} connections; taskset ${pinned ? "on" : "off"}`,
);

async function checkAnswer(server: ServerProcess, template: ReturnType<typeof requestTemplate>, expectValid: boolean) {
  const request = template.setupRequest({});
  const response = await fetch(`${server.url}${template.path}`, {
    method: template.method,
    headers: template.headers,
    body: request.body ?? "",
  });
  const body = (await response.json()) as { valid?: unknown };
  if (response.status !== 200 || (expectValid && body.valid !== true)) {
    throw new Error(`sanity check failed on ${server.url}: ${response.status} ${JSON.stringify(body)}`);
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Per-server figures: the median round (robust to a burst of load from elsewhere). */
function typical(items: Measurement[]): Measurement {
  const mid = (pick: (m: Measurement) => number) => median(items.map(pick));
  return {
    requestsPerSecond: mid((m) => m.requestsPerSecond),
    p50Ms: mid((m) => m.p50Ms),
    p99Ms: mid((m) => m.p99Ms),
    meanMs: mid((m) => m.meanMs),
    requests: items.reduce((sum, m) => sum + m.requests, 0),
    non2xx: items.reduce((sum, m) => sum + m.non2xx, 0),
    errors: items.reduce((sum, m) => sum + m.errors, 0),
    timeouts: items.reduce((sum, m) => sum + m.timeouts, 0),
    serverCpu: items.every((m) => m.serverCpu !== null) ? mid((m) => m.serverCpu ?? 0) : null,
    loadgenCpu: mid((m) => m.loadgenCpu),
    cpuMicrosPerRequest: items.every((m) => m.cpuMicrosPerRequest !== null)
      ? mid((m) => m.cpuMicrosPerRequest ?? 0)
      : null,
  };
}

/**
 * Gatehouse / baseline, taken round by round (each pair ran back to back, under the
 * same background load) and then the median: the machine may be shared and noisy.
 */
function pairedRatios(baseline: Measurement[], gatehouse: Measurement[]) {
  const ratio = (pick: (m: Measurement) => number) =>
    median(gatehouse.map((g, i) => pick(g) / pick(baseline[i] as Measurement)));
  const cpu = gatehouse.every((m, i) => m.cpuMicrosPerRequest !== null && baseline[i]?.cpuMicrosPerRequest != null);
  return {
    requestsPerSecond: ratio((m) => m.requestsPerSecond),
    p50: ratio((m) => m.p50Ms),
    p99: ratio((m) => m.p99Ms),
    // Baseline CPU per request / Gatehouse CPU per request: the throughput ratio two
    // servers would show, each with a whole core to itself.
    cpuNormalised: cpu ? 1 / ratio((m) => m.cpuMicrosPerRequest ?? 0) : null,
  };
}

const baseline = await startBaseline();
const results: KeyCountResult[] = [];
try {
  for (const count of keyCounts) {
    log(`seeding ${count} keys…`);
    const data = await seed(count);
    log(`  seeded in ${data.seedSeconds.toFixed(1)}s (${data.dataDir})`);
    const gatehouse = await startGatehouse(data.dataDir);
    try {
      const template = requestTemplate(data.serviceKey, data.keys, SEED_SCOPES.slice(0, 1));
      await checkAnswer(baseline, template, false);
      await checkAnswer(gatehouse, template, true);
      const warm = { ...load, durationSeconds: warmupSeconds };
      await measure(baseline, template, warm);
      await measure(gatehouse, template, warm);
      const baselineRuns: Measurement[] = [];
      const gatehouseRuns: Measurement[] = [];
      for (let round = 1; round <= rounds; round++) {
        baselineRuns.push(await measure(baseline, template, load));
        gatehouseRuns.push(await measure(gatehouse, template, load));
        const [b, g] = [baselineRuns.at(-1), gatehouseRuns.at(-1)] as [Measurement, Measurement];
        log(
          `  round ${round}: baseline ${b.requestsPerSecond.toFixed(0)} req/s, gatehouse ${g.requestsPerSecond.toFixed(0)} req/s (${(g.requestsPerSecond / b.requestsPerSecond).toFixed(2)}x)`,
        );
      }
      await checkAnswer(gatehouse, template, true);
      const memory = memoryOf(gatehouse.pid);
      results.push({
        keys: count,
        seedSeconds: data.seedSeconds,
        baseline: typical(baselineRuns),
        gatehouse: typical(gatehouseRuns),
        ratio: pairedRatios(baselineRuns, gatehouseRuns),
        rounds: { baseline: baselineRuns, gatehouse: gatehouseRuns },
        gatehouseRssMB: memory?.rssMB ?? null,
        gatehousePeakRssMB: memory?.peakRssMB ?? null,
      });
    } finally {
      await gatehouse.stop();
      rmSync(data.dataDir, { recursive: true, force: true });
    }
  }
} finally {
  await baseline.stop();
}

const report: BenchResults = {
  startedAt: started.toISOString(),
  finishedAt: new Date().toISOString(),
  load: { ...load, rounds, warmupSeconds, pinnedCores: pinned && hasTaskset },
  machineLoad: { before: loadBefore, after: loadavg()[0] as number },
  results,
};
const summary = summarise(report);
writeResults(summary);
log(summary.markdown);
