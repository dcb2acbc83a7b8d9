/** Turns measurements into bench/results/latest.json and latest.md, with the issues' targets checked. */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem, type } from "node:os";
import type { RefreshResult, SignInResult, SigningLimit } from "./auth-part.ts";
import type { JwtModeResult } from "./jwt-part.ts";
import type { LoadOptions, Measurement } from "./load.ts";
import type { PairedResult, Ratio } from "./paired.ts";
import type { ClusterResult } from "./postgres-part.ts";

export interface KeyCountResult {
  keys: number;
  seedSeconds: number;
  baseline: Measurement;
  gatehouse: Measurement;
  /** Median over rounds of Gatehouse / baseline in the same round. */
  ratio: Ratio;
  rounds: { baseline: Measurement[]; gatehouse: Measurement[] };
  /** Gatehouse's VmRSS/VmHWM after its measurements at this key count. */
  gatehouseRssMB: number | null;
  gatehousePeakRssMB: number | null;
}

/** The bare route against itself doing `extraWorkMicros` more per request (bench/run.ts). */
export interface WorkCeiling extends PairedResult {
  extraWorkMicros: number;
}

export interface AuthResults {
  signIns: SignInResult;
  refresh: RefreshResult;
  jwt: JwtModeResult[];
  /** What this machine signs per second, per algorithm: the ceiling of rotations. */
  signingLimits: SigningLimit[];
  /** Refresh rotations again, on servers signing with other algorithms (EdDSA, HS256). */
  refreshOtherAlgs: Array<{ alg: string; refresh: RefreshResult }>;
  /** The SDK's guard again, with tokens signed with other algorithms (first-seen, HS256). */
  jwtOtherAlgs: JwtModeResult[];
}

export interface PostgresResults {
  keys: number;
  seedSeconds: number;
  /** Verify against the bare route (paired), and against SQLite with as many keys (same run, not paired). */
  verify: (PairedResult & { toSqlite: Ratio | null }) | null;
  signIns: SignInResult | null;
  refresh: RefreshResult | null;
  cluster: ClusterResult[];
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  parts: string[];
  load: LoadOptions & {
    rounds: number;
    warmupSeconds: number;
    signInSeconds: number;
    /** Absent in results from before the sign-ins were measured in paired rounds. */
    signInRounds?: number;
    pinnedCores: boolean;
  };
  /** One-minute load average before and after: above ~2 on 2 cores, others were busy too. */
  machineLoad: { before: number; after: number };
  results: KeyCountResult[];
  /** Null in results written before it was measured, or when the keys part did not run. */
  workCeiling?: WorkCeiling | null;
  /** Fastify with Gatehouse's settings and none of its work (bench/framework-floor-server.ts). */
  frameworkFloor?: PairedResult | null;
  auth: AuthResults | null;
  postgres: PostgresResults | null;
  /** Parts that failed (the rest of the run went on). */
  failures: Array<{ part: string; error: string }>;
}

/** The issues' targets. */
export const TARGETS = {
  minRatio: 0.7,
  maxRatioSpread: 0.1,
  maxRssMB: 200,
  rssAtKeys: 1_000_000,
  signInsOfLimit: 0.9,
  refreshPerSecond: 5000,
  jwtFirstSeen: 0.5,
  jwtSeenBefore: 0.85,
  /** "Other routes' p99 unaffected": at most 1.5× its p99 alone, or within 5 ms of it. */
  probeP99Factor: 1.5,
  probeP99SlackMs: 5,
};

const fixed = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined ? "n/a" : value.toFixed(digits);
const x = (value: number | null | undefined) =>
  value === null || value === undefined ? "n/a" : `${value.toFixed(2)}x`;
const int = (value: number) => Math.round(value).toLocaleString("en");

function machine() {
  const cores = cpus();
  return {
    cpu: cores[0]?.model ?? "unknown",
    cores: cores.length,
    memoryGB: Math.round(totalmem() / 2 ** 30),
    os: `${type()} ${release()}`,
    node: process.version,
  };
}

function spreadOf(values: number[]): number {
  return values.length > 1 ? (Math.max(...values) - Math.min(...values)) / Math.max(...values) : 0;
}

function probeUnaffected(probe: SignInResult["probes"][number]): boolean {
  const alone = probe.alone.p99Ms;
  return probe.duringSignIns.p99Ms <= Math.max(alone * TARGETS.probeP99Factor, alone + TARGETS.probeP99SlackMs);
}

export function summarise(results: BenchResults) {
  const rows = results.results;
  const ratios = rows.map((r) => r.ratio.requestsPerSecond);
  const cpuRatios = rows.map((r) => r.ratio.cpuNormalised).filter((v): v is number => v !== null);
  const rssRow = rows.find((r) => r.keys === TARGETS.rssAtKeys);
  const auth = results.auth;
  const firstSeen = auth?.jwt.find((j) => j.mode === "first-seen");
  const seenBefore = auth?.jwt.find((j) => j.mode === "seen-before");
  const rs256Limit = auth?.signingLimits.find((l) => l.alg === "RS256");
  const targets = {
    ratioAtLeast70Percent: rows.length ? ratios.every((ratio) => ratio >= TARGETS.minRatio) : null,
    ratioSpread: spreadOf(ratios),
    ratioSameWithin10Percent: rows.length > 1 ? spreadOf(ratios) <= TARGETS.maxRatioSpread : null,
    cpuRatioAtLeast70Percent: cpuRatios.length ? cpuRatios.every((ratio) => ratio >= TARGETS.minRatio) : null,
    cpuRatioSpread: spreadOf(cpuRatios),
    cpuRatioSameWithin10Percent: cpuRatios.length > 1 ? spreadOf(cpuRatios) <= TARGETS.maxRatioSpread : null,
    rssMBAtMillionKeys: rssRow?.gatehouseRssMB ?? null,
    rssUnder200MB: rssRow?.gatehouseRssMB == null ? null : rssRow.gatehouseRssMB < TARGETS.maxRssMB,
    signInsWithin90PercentOfLimit: auth ? auth.signIns.ofLimit >= TARGETS.signInsOfLimit : null,
    otherRoutesP99Unaffected: auth ? auth.signIns.probes.every(probeUnaffected) : null,
    refreshAtLeast5000PerSecond: auth ? auth.refresh.subject.requestsPerSecond >= TARGETS.refreshPerSecond : null,
    jwtFirstSeenCpuRatio: firstSeen ? (firstSeen.ratio.cpuNormalised ?? 0) >= TARGETS.jwtFirstSeen : null,
    jwtFirstSeenRequestsRatio: firstSeen ? firstSeen.ratio.requestsPerSecond >= TARGETS.jwtFirstSeen : null,
    jwtSeenBeforeCpuRatio: seenBefore ? (seenBefore.ratio.cpuNormalised ?? 0) >= TARGETS.jwtSeenBefore : null,
    jwtSeenBeforeRequestsRatio: seenBefore ? seenBefore.ratio.requestsPerSecond >= TARGETS.jwtSeenBefore : null,
  };
  const json = { machine: machine(), ...results, targets };
  const m = json.machine;
  const met = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "met" : "NOT met");
  const list = (values: number[]) => values.map((v) => `${v.toFixed(2)}x`).join(", ");
  const head =
    "| server | req/s | p50 ms | p99 ms | CPU µs/req | req/s ratio | CPU ratio | p99 ratio | server CPU | load-gen CPU | non-2xx |";
  const rule = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |";
  const line = (name: string, v: Measurement, ratio: Ratio | null) =>
    `| ${name} | ${int(v.requestsPerSecond)} | ${v.p50Ms.toFixed(1)} | ${v.p99Ms.toFixed(1)} | ${fixed(v.cpuMicrosPerRequest, 0)} | ${ratio ? x(ratio.requestsPerSecond) : "1.00x"} | ${ratio ? `**${x(ratio.cpuNormalised)}**` : "1.00x"} | ${ratio ? x(ratio.p99) : "1.00x"} | ${fixed(v.serverCpu, 2)} | ${v.loadgenCpu.toFixed(2)} | ${v.non2xx + v.errors} |`;

  const lines = [
    "# Gatehouse benchmark",
    "",
    `- Date: ${results.startedAt} to ${results.finishedAt}; parts: ${results.parts.join(", ")}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, ${m.os}; Node ${m.node}`,
    `- Load: autocannon, ${results.load.connections} connections, pipelining ${results.load.pipelining}, ${results.load.rounds} paired round(s) of ${results.load.durationSeconds}s after ${results.load.warmupSeconds}s warm-up; sign-ins ${results.load.signInRounds ?? 1} round(s) of ${results.load.signInSeconds}s, each after a measurement of the hashing limit, median round reported; server on core 0, load generator on core 1: ${results.load.pinnedCores ? "yes (taskset)" : "no"} (sign-ins, refresh rotations and the cluster part use any core)`,
    `- Machine load average (1 min) before/after: ${results.machineLoad.before.toFixed(1)} / ${results.machineLoad.after.toFixed(1)} (2 cores: above ~2, other work shared the cores and requests/s understate every server)`,
    "- Paired rounds: reference (bare route) then subject, back to back; per-server figures are the median round, ratios the median of per-round ratios. CPU µs/req is the server's CPU time per answered request; the CPU ratio (reference µs/req ÷ subject µs/req) is the throughput ratio with a core each, and depends far less on how busy the machine was.",
    "",
  ];

  if (rows.length) {
    lines.push(
      "## POST /v1/keys/verify, SQLite",
      "",
      "| keys stored | server | req/s | p50 ms | p99 ms | CPU µs/req | req/s ratio | CPU ratio | p99 ratio | server CPU | load-gen CPU | non-2xx | RSS MB (peak) |",
      "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (const r of rows) {
      lines.push(`| ${int(r.keys)} ${line("bare Fastify", r.baseline, null)}  |`);
      lines.push(
        `| ${int(r.keys)} ${line("Gatehouse", r.gatehouse, r.ratio)} ${fixed(r.gatehouseRssMB, 0)} (${fixed(r.gatehousePeakRssMB, 0)}) |`,
      );
    }
    lines.push("");
    const ceiling = results.workCeiling;
    if (ceiling) {
      lines.push(
        `Yardstick, same run: the bare route made to spin ${ceiling.extraWorkMicros} µs more per request (and nothing else) costs ${fixed(ceiling.subject.cpuMicrosPerRequest, 0)} µs of CPU a request against ${fixed(ceiling.reference.cpuMicrosPerRequest, 0)}: CPU ratio **${x(ceiling.ratio.cpuNormalised)}**, requests/s ratio ${x(ceiling.ratio.requestsPerSecond)}. On this machine that is the best a server doing ${ceiling.extraWorkMicros} µs more than the bare route can show (docs/benchmarks.md, "The yardstick").`,
        "",
      );
    }
    const floor = results.frameworkFloor;
    if (floor) {
      lines.push(
        `Framework floor, same run: the verify route with Gatehouse's Fastify settings, hooks, schemas and headers and none of its work (no caller authentication, no key check, no counting; bench/framework-floor-server.ts) costs ${fixed(floor.subject.cpuMicrosPerRequest, 0)} µs of CPU a request against ${fixed(floor.reference.cpuMicrosPerRequest, 0)}: CPU ratio **${x(floor.ratio.cpuNormalised)}**, requests/s ratio ${x(floor.ratio.requestsPerSecond)}. Gatehouse's own work must fit between this and the target.`,
        "",
      );
    }
  }

  if (auth) {
    const s = auth.signIns;
    lines.push(
      "## Sign-in, refresh and the SDK's JWT guard (issue 3), SQLite",
      "",
      `argon2id m=${s.limit.parameters.memoryKiB} KiB, t=${s.limit.parameters.timeCost}, p=${s.limit.parameters.parallelism}. Sign-ins and the hashing limit (${s.limit.threads} hashes at once, libuv's pool) both on any core, and so refresh rotations (the bare route on core 0); the guarded route with the servers on core 0.`,
      "",
      ...signInTable([["SQLite", s]]),
      "",
      ...refreshTable([
        ["SQLite", auth.refresh],
        ...auth.refreshOtherAlgs.map((other) => [`SQLite, ${other.alg}`, other.refresh] as const),
      ]),
      "",
      ...signingTable(auth),
      "| tokens | distinct tokens | verifier cache | unguarded req/s | guarded req/s | req/s ratio | CPU µs/req open / guarded | CPU ratio | p99 ms open / guarded | target | non-2xx |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      ...[...auth.jwt, ...auth.jwtOtherAlgs].map(
        (j) =>
          `| ${j.mode}, ${j.alg} | ${int(j.distinctTokens)} | ${int(j.cacheMaxEntries)} | ${int(j.reference.requestsPerSecond)} | ${int(j.subject.requestsPerSecond)} | ${x(j.ratio.requestsPerSecond)} | ${fixed(j.reference.cpuMicrosPerRequest, 0)} / ${fixed(j.subject.cpuMicrosPerRequest, 0)} | **${x(j.ratio.cpuNormalised)}** | ${j.reference.p99Ms} / ${j.subject.p99Ms} | ${j.target.toFixed(2)}x | ${j.subject.non2xx + j.subject.errors} |`,
      ),
      "",
    );
  }

  const pg = results.postgres;
  if (pg) {
    lines.push(`## PostgreSQL + Redis (issue 4), ${int(pg.keys)} keys (seeded in ${pg.seedSeconds.toFixed(0)} s)`, "");
    if (pg.verify) {
      const v = pg.verify;
      lines.push(
        "POST /v1/keys/verify:",
        "",
        head,
        rule,
        line("bare Fastify", v.reference, null),
        line("Gatehouse, PostgreSQL + Redis", v.subject, v.ratio),
        "",
        `Against SQLite with as many keys in the same run (not paired): req/s ${x(v.toSqlite?.requestsPerSecond)}, CPU ratio ${x(v.toSqlite?.cpuNormalised)}, p99 ${x(v.toSqlite?.p99)}.`,
        "",
      );
    }
    const sqliteSignIns = auth?.signIns;
    if (pg.signIns) {
      lines.push(
        ...signInTable([
          ...(sqliteSignIns ? ([["SQLite", sqliteSignIns]] as const) : []),
          ["PostgreSQL + Redis", pg.signIns],
        ]),
        "",
      );
      if (sqliteSignIns) {
        lines.push(
          `Sign-ins, PostgreSQL ÷ SQLite: req/s ${x(pg.signIns.signIns.requestsPerSecond / sqliteSignIns.signIns.requestsPerSecond)}, CPU ratio ${x(ratioOfCpu(sqliteSignIns.signIns, pg.signIns.signIns))}.`,
          "",
        );
      }
    }
    if (pg.refresh) {
      lines.push(
        ...refreshTable([...(auth ? ([["SQLite", auth.refresh]] as const) : []), ["PostgreSQL + Redis", pg.refresh]]),
        "",
      );
      if (auth) {
        lines.push(
          `Refresh, PostgreSQL ÷ SQLite: req/s ${x(pg.refresh.subject.requestsPerSecond / auth.refresh.subject.requestsPerSecond)}, CPU ratio ${x(ratioOfCpu(auth.refresh.subject, pg.refresh.subject))}.`,
          "",
        );
      }
    }
    if (pg.cluster.length) {
      lines.push(
        "One node against two (same database and Redis; servers, load generator, PostgreSQL and Redis share both cores):",
        "",
        "| route | nodes | req/s | p50 ms | p99 ms | CPU µs/req (Gatehouse processes) | machine busy | non-2xx |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
      );
      for (const c of pg.cluster) {
        const busy = (v: number | null) => (v === null ? "n/a" : `${(v * 100).toFixed(0)}%`);
        const row = (count: number, v: Measurement, b: number | null) =>
          `| ${c.route} | ${count} | ${int(v.requestsPerSecond)} | ${v.p50Ms.toFixed(1)} | ${v.p99Ms.toFixed(1)} | ${fixed(v.cpuMicrosPerRequest, 0)} | ${busy(b)} | ${v.non2xx + v.errors} |`;
        lines.push(row(1, c.oneNode, c.machineBusy.oneNode), row(2, c.twoNodes, c.machineBusy.twoNodes));
      }
      lines.push(
        "",
        ...pg.cluster.map(
          (c) =>
            `- ${c.route}: two nodes ÷ one node ${x(c.ratio.requestsPerSecond)} req/s, ${x(c.ratio.cpuMicrosPerRequest)} CPU per request`,
        ),
        "",
      );
    }
  }

  lines.push("## Targets", "");
  if (rows.length) {
    lines.push(
      `- verify at least 0.70x the bare route: requests/s ${met(targets.ratioAtLeast70Percent)} (${list(ratios)}); CPU ${met(targets.cpuRatioAtLeast70Percent)} (${list(cpuRatios)})`,
      `- same ratio at every key count, within 10%: requests/s ${met(targets.ratioSameWithin10Percent)} (spread ${(targets.ratioSpread * 100).toFixed(1)}%); CPU ${met(targets.cpuRatioSameWithin10Percent)} (spread ${(targets.cpuRatioSpread * 100).toFixed(1)}%)`,
      `- RSS under 200 MB with 1,000,000 keys: ${met(targets.rssUnder200MB)} (${fixed(targets.rssMBAtMillionKeys, 0)} MB)`,
    );
  }
  if (auth) {
    const s = auth.signIns;
    lines.push(
      `- sign-ins within 90% of the argon2id limit: ${met(targets.signInsWithin90PercentOfLimit)} (${s.signIns.requestsPerSecond.toFixed(1)}/s of ${s.limit.hashesPerSecond.toFixed(1)}/s, ${(s.ofLimit * 100).toFixed(0)}%)`,
      `- other routes' p99 unaffected by sign-ins (each at ${s.probeRate}/s; at most ${TARGETS.probeP99Factor}x or +${TARGETS.probeP99SlackMs} ms): ${met(targets.otherRoutesP99Unaffected)} (${s.probes.map((p) => `${p.path} ${met(probeUnaffected(p))}: ${p.alone.p99Ms} ms alone, ${p.duringSignIns.p99Ms} ms during`).join("; ")})`,
      `- refresh rotations at least 5,000/s on SQLite: ${met(targets.refreshAtLeast5000PerSecond)} (${int(auth.refresh.subject.requestsPerSecond)}/s with RS256, the default${auth.refreshOtherAlgs.map((other) => `; ${int(other.refresh.subject.requestsPerSecond)}/s with ${other.alg}`).join("")}${rs256Limit ? `; this machine signs at most ${int(rs256Limit.signaturesPerSecond)} RS256 tokens/s on all cores` : ""})`,
      `- guarded route at least 0.5x unguarded, first-seen tokens: CPU ${met(targets.jwtFirstSeenCpuRatio)} (${x(firstSeen?.ratio.cpuNormalised)}); requests/s ${met(targets.jwtFirstSeenRequestsRatio)} (${x(firstSeen?.ratio.requestsPerSecond)}) with RS256, the default${auth.jwtOtherAlgs.map((j) => `; with ${j.alg}: CPU ${x(j.ratio.cpuNormalised)}, requests/s ${x(j.ratio.requestsPerSecond)}`).join("")}`,
      `- guarded route at least 0.85x unguarded, seen-before tokens: CPU ${met(targets.jwtSeenBeforeCpuRatio)} (${x(seenBefore?.ratio.cpuNormalised)}); requests/s ${met(targets.jwtSeenBeforeRequestsRatio)} (${x(seenBefore?.ratio.requestsPerSecond)})`,
    );
  }
  if (results.failures.length) {
    lines.push("", "## Failed parts", "", ...results.failures.map((f) => `- ${f.part}: ${f.error.split("\n")[0]}`));
  }
  lines.push("");
  return { json, markdown: lines.join("\n") };
}

function ratioOfCpu(reference: Measurement, subject: Measurement): number | null {
  return reference.cpuMicrosPerRequest && subject.cpuMicrosPerRequest
    ? reference.cpuMicrosPerRequest / subject.cpuMicrosPerRequest
    : null;
}

function signInTable(entries: ReadonlyArray<readonly [string, SignInResult]>): string[] {
  return [
    "| POST /auth/login | one hash ms | hashes/s, 4 at once (limit) | threads ÷ hash time | sign-ins/s | of limit | CPU µs/sign-in | p99 ms | non-2xx | bare route req/s | sign-ins ÷ bare | p99 ms alone / during sign-ins |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...entries.map(
      ([name, s]) =>
        `| ${name} | ${s.limit.hashMs.toFixed(1)} | ${s.limit.hashesPerSecond.toFixed(1)} | ${s.limit.fromHashTime.toFixed(1)} | ${s.signIns.requestsPerSecond.toFixed(1)} | **${(s.ofLimit * 100).toFixed(0)}%**${s.roundsOfLimit && s.roundsOfLimit.length > 1 ? ` (rounds: ${s.roundsOfLimit.map((share) => `${(share * 100).toFixed(0)}%`).join(", ")})` : ""} | ${fixed(s.signIns.cpuMicrosPerRequest, 0)} | ${s.signIns.p99Ms} | ${s.signIns.non2xx + s.signIns.errors} | ${int(s.bare.requestsPerSecond)} | ${(s.signIns.requestsPerSecond / s.bare.requestsPerSecond).toFixed(4)}x | ${s.probes.map((p) => `${p.path} ${p.alone.p99Ms} / ${p.duringSignIns.p99Ms}`).join("; ")} |`,
    ),
  ];
}

/**
 * Each rotation signs one access token: rotations per second against what the machine can
 * sign per second with the same algorithm (all threads of libuv's pool, nothing else).
 */
function signingTable(auth: AuthResults): string[] {
  if (auth.signingLimits.length === 0) return [];
  const rotations = new Map<string, number>([["RS256", auth.refresh.subject.requestsPerSecond]]);
  for (const other of auth.refreshOtherAlgs) rotations.set(other.alg, other.refresh.subject.requestsPerSecond);
  return [
    "| access-token algorithm | signatures/s, this machine, nothing else (libuv pool; HS256 one thread) | rotations/s | rotations ÷ signatures |",
    "| --- | ---: | ---: | ---: |",
    ...auth.signingLimits.map((l) => {
      const done = rotations.get(l.alg);
      return `| ${l.alg} | ${int(l.signaturesPerSecond)} | ${done === undefined ? "" : int(done)} | ${done === undefined ? "" : `${((done / l.signaturesPerSecond) * 100).toFixed(0)}%`} |`;
    }),
    "",
  ];
}

function refreshTable(entries: ReadonlyArray<readonly [string, RefreshResult]>): string[] {
  return [
    "| POST /auth/refresh | bare req/s | rotations/s | p50 ms | p99 ms | CPU µs/req bare / Gatehouse | req/s ratio | CPU ratio | non-2xx | pool ran dry |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...entries.map(
      ([name, r]) =>
        `| ${name} | ${int(r.reference.requestsPerSecond)} | **${int(r.subject.requestsPerSecond)}** | ${r.subject.p50Ms.toFixed(1)} | ${r.subject.p99Ms.toFixed(1)} | ${fixed(r.reference.cpuMicrosPerRequest, 0)} / ${fixed(r.subject.cpuMicrosPerRequest, 0)} | ${x(r.ratio.requestsPerSecond)} | ${x(r.ratio.cpuNormalised)} | ${r.subject.non2xx + r.subject.errors} | ${r.poolEmpty} |`,
    ),
  ];
}

/** bench/results/<name>.json and .md; the name is BENCH_RESULTS_NAME, default "latest". */
export function writeResults(summary: ReturnType<typeof summarise>, name = "latest"): void {
  if (!/^[\w.-]+$/.test(name)) throw new TypeError("BENCH_RESULTS_NAME: letters, digits, '.', '_' and '-' only");
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL(`${name}.json`, dir), `${JSON.stringify(summary.json, null, 2)}\n`);
  writeFileSync(new URL(`${name}.md`, dir), summary.markdown);
}
