/**
 * `node sdk/bench/jwt-guard.ts`: a route guarded by `requireToken` as a ratio to the same
 * route unguarded, on one Fastify process, for tokens seen for the first time and tokens
 * seen before (issue 3, "Benchmark": targets 0.5× and 0.85×).
 *
 * - seen-before: the verifier's cache on; every request presents one token, so all but
 *   the first are cache hits (a map lookup and a string comparison).
 * - first-seen: `cache.maxEntries: 0`, so every request pays the whole verification (form
 *   check, JWKS key lookup, RS256 signature, claims) as a never-seen token would. This
 *   omits only the cache insert of a real first sighting (a map set and an eviction, about
 *   1% of the verification), and needs no pool of thousands of distinct tokens.
 *
 * Tokens come from a real Gatehouse (in this process, idle during the load; the API
 * fetches its JWKS once). The API gets core 0 and autocannon core 1 when `taskset`
 * exists. Each round measures both routes back to back; the ratio is the median of the
 * per-round ratios, so a burst of load from elsewhere on a shared machine skews one
 * round, not the result. Server CPU time per request (from /proc) is reported too: on a
 * busy machine, where throughput says more about the neighbours than about the route, its
 * ratio is the steadier figure. Overrides: BENCH_DURATION (s, default 5), BENCH_ROUNDS (3),
 * BENCH_CONNECTIONS (50).
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { startTokenGatehouse } from "../test/support/tokens.ts";

const duration = envInt("BENCH_DURATION", 5);
const rounds = envInt("BENCH_ROUNDS", 3);
const connections = envInt("BENCH_CONNECTIONS", 50);
const hasTaskset = spawnSync("taskset", ["--version"]).status === 0;
const pinned = hasTaskset && spawnSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)]).status === 0;
const log = (line: string) => process.stderr.write(`${line}\n`);

function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new TypeError(`${name} must be a positive whole number`);
  return value;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function startApi(settings: Record<string, unknown>): Promise<{ url: string; child: ChildProcess }> {
  const script = fileURLToPath(new URL("./guarded-api.ts", import.meta.url));
  const command = [process.execPath, script];
  const [file, ...args] = hasTaskset ? ["taskset", "-c", "0", ...command] : command;
  const child = spawn(file as string, args, {
    env: { ...process.env, BENCH_API: JSON.stringify(settings) },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.once("exit", (code) => reject(new Error(`the API exited with code ${code}`)));
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes("\n")) resolve(out.split("\n")[0]?.trim() ?? "");
    });
  });
  return { url, child };
}

/** CPU seconds (user + system) a process has used so far; null off Linux. */
function cpuSecondsOf(pid: number | undefined): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

async function measure(api: { url: string; child: ChildProcess }, path: string, token: string, seconds: number) {
  const cpuBefore = cpuSecondsOf(api.child.pid);
  const result = await autocannon({
    url: api.url,
    connections,
    duration: seconds,
    requests: [{ method: "GET", path, headers: { authorization: `Bearer ${token}` } }],
  });
  if (result.non2xx > 0 || result.errors > 0) {
    throw new Error(`${path}: ${result.non2xx} non-2xx answers, ${result.errors} errors`);
  }
  const cpuAfter = cpuSecondsOf(api.child.pid);
  const cpuMicrosPerRequest =
    cpuBefore === null || cpuAfter === null ? null : ((cpuAfter - cpuBefore) * 1e6) / result.requests.total;
  return { requestsPerSecond: result.requests.average, p99Ms: result.latency.p99, cpuMicrosPerRequest };
}

const gatehouse = await startTokenGatehouse();
const rows: string[] = [];
try {
  const { accessToken } = await gatehouse.signIn({ scopes: ["payments:read"] });
  const base = { issuer: gatehouse.issuer, audience: gatehouse.audience, jwksUri: gatehouse.jwksUri };
  log(`jwt-guard: ${rounds} round(s) of ${duration}s, ${connections} connections, taskset ${pinned ? "on" : "off"}`);
  for (const [label, maxEntries, target] of [
    ["first-seen tokens", 0, 0.5],
    ["seen-before tokens", 10_000, 0.85],
  ] as const) {
    const api = await startApi({ ...base, maxEntries });
    try {
      await measure(api, "/guarded", accessToken, 2);
      await measure(api, "/open", accessToken, 2);
      const ratios: number[] = [];
      const open: number[] = [];
      const guarded: number[] = [];
      const p99: Array<[number, number]> = [];
      const cpu: Array<[number, number]> = [];
      for (let round = 1; round <= rounds; round++) {
        const o = await measure(api, "/open", accessToken, duration);
        const g = await measure(api, "/guarded", accessToken, duration);
        if (o.cpuMicrosPerRequest !== null && g.cpuMicrosPerRequest !== null) {
          cpu.push([o.cpuMicrosPerRequest, g.cpuMicrosPerRequest]);
        }
        open.push(o.requestsPerSecond);
        guarded.push(g.requestsPerSecond);
        p99.push([o.p99Ms, g.p99Ms]);
        ratios.push(g.requestsPerSecond / o.requestsPerSecond);
        log(
          `  ${label}, round ${round}: open ${o.requestsPerSecond.toFixed(0)}/s, guarded ${g.requestsPerSecond.toFixed(0)}/s`,
        );
      }
      const ratio = median(ratios);
      const cpuCell =
        cpu.length === 0
          ? "n/a"
          : `${median(cpu.map(([o]) => o)).toFixed(0)} / ${median(cpu.map(([, g]) => g)).toFixed(0)} (${median(cpu.map(([o, g]) => o / g)).toFixed(2)}×)`;
      rows.push(
        `| ${label} | ${median(open).toFixed(0)} | ${median(guarded).toFixed(0)} | ${ratio.toFixed(2)}× | ${target}× | ${ratio >= target ? "met" : "missed"} | ${cpuCell} | ${median(p99.map(([o]) => o))} / ${median(p99.map(([, g]) => g))} |`,
      );
    } finally {
      api.child.kill("SIGTERM");
    }
  }
} finally {
  await gatehouse.close();
}
process.stdout.write(
  [
    `RS256 access tokens, requireToken({ scopes: ["payments:read"] }) vs the same route unguarded; load average ${loadavg()[0]?.toFixed(1)}.`,
    "",
    "| tokens | unguarded req/s | guarded req/s | ratio (median of rounds) | target | | server CPU µs/request, open / guarded (ratio) | p99 ms (open / guarded) |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n"),
);
