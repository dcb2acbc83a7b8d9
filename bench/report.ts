/** Turns measurements into bench/results/latest.json and latest.md, with the targets checked. */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem, type } from "node:os";
import type { LoadOptions, Measurement } from "./load.ts";

export interface KeyCountResult {
  keys: number;
  seedSeconds: number;
  baseline: Measurement;
  gatehouse: Measurement;
  /** Median over rounds of Gatehouse / baseline in the same round. */
  ratio: { requestsPerSecond: number; p50: number; p99: number; cpuNormalised: number | null };
  rounds: { baseline: Measurement[]; gatehouse: Measurement[] };
  /** Gatehouse's VmRSS/VmHWM after its measurements at this key count. */
  gatehouseRssMB: number | null;
  gatehousePeakRssMB: number | null;
}

export interface BenchResults {
  startedAt: string;
  finishedAt: string;
  load: LoadOptions & { rounds: number; warmupSeconds: number; pinnedCores: boolean };
  /** One-minute load average before and after: above ~2 on 2 cores, others were busy too. */
  machineLoad: { before: number; after: number };
  results: KeyCountResult[];
}

/** The targets. */
export const TARGETS = { minRatio: 0.7, maxRatioSpread: 0.1, maxRssMB: 200, rssAtKeys: 1_000_000 };

const fixed = (value: number | null, digits: number) => (value === null ? "n/a" : value.toFixed(digits));

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

export function summarise(results: BenchResults) {
  const rows = results.results;
  const ratios = rows.map((r) => r.ratio.requestsPerSecond);
  const cpuRatios = rows.map((r) => r.ratio.cpuNormalised).filter((x): x is number => x !== null);
  const rssRow = rows.find((r) => r.keys === TARGETS.rssAtKeys);
  const targets = {
    ratioAtLeast70Percent: ratios.every((ratio) => ratio >= TARGETS.minRatio),
    ratioSpread: spreadOf(ratios),
    ratioSameWithin10Percent: spreadOf(ratios) <= TARGETS.maxRatioSpread,
    cpuRatioAtLeast70Percent: cpuRatios.length > 0 && cpuRatios.every((ratio) => ratio >= TARGETS.minRatio),
    cpuRatioSpread: spreadOf(cpuRatios),
    cpuRatioSameWithin10Percent: spreadOf(cpuRatios) <= TARGETS.maxRatioSpread,
    rssMBAtMillionKeys: rssRow?.gatehouseRssMB ?? null,
    rssUnder200MB: rssRow?.gatehouseRssMB == null ? null : rssRow.gatehouseRssMB < TARGETS.maxRssMB,
  };
  const json = { machine: machine(), ...results, results: rows, targets };
  const m = json.machine;
  const met = (ok: boolean | null) => (ok === null ? "not measured" : ok ? "met" : "NOT met");
  const list = (values: number[]) => values.map((x) => `${x.toFixed(2)}x`).join(", ");
  const lines = [
    "# Gatehouse benchmark: POST /v1/keys/verify",
    "",
    `- Date: ${results.startedAt} to ${results.finishedAt}`,
    `- Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, ${m.os}; Node ${m.node}`,
    `- Load: autocannon, ${results.load.connections} connections, pipelining ${results.load.pipelining}, ${results.load.rounds} round(s) of ${results.load.durationSeconds}s per server after ${results.load.warmupSeconds}s warm-up; server on core 0, load generator on core 1: ${results.load.pinnedCores ? "yes (taskset)" : "no"}`,
    `- Machine load average (1 min) before/after: ${results.machineLoad.before.toFixed(1)} / ${results.machineLoad.after.toFixed(1)} (2 cores: above ~2, other work shared the cores and requests/s understate both servers)`,
    "- Each round measures the bare route, then Gatehouse, back to back. Figures per server are the median round; ratios are the median of the per-round Gatehouse / bare ratios (requests/s: higher is better; latency: lower is better).",
    "- CPU µs/req is the server's CPU time per answered request; the CPU ratio (bare µs/req ÷ Gatehouse µs/req) is the throughput ratio each server would reach with a core of its own, and depends far less on how busy the machine was.",
    "",
    "| keys stored | server | req/s | p50 ms | p99 ms | CPU µs/req | req/s ratio | CPU ratio | p50 ratio | p99 ratio | server CPU | load-gen CPU | non-2xx | RSS MB (peak) |",
    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ];
  for (const r of rows) {
    const row = (name: string, x: Measurement, ratios: string, rss: string) =>
      `| ${r.keys.toLocaleString("en")} | ${name} | ${x.requestsPerSecond.toFixed(0)} | ${x.p50Ms.toFixed(1)} | ${x.p99Ms.toFixed(1)} | ${fixed(x.cpuMicrosPerRequest, 0)} | ${ratios} | ${fixed(x.serverCpu, 2)} | ${x.loadgenCpu.toFixed(2)} | ${x.non2xx + x.errors} | ${rss} |`;
    lines.push(row("bare Fastify", r.baseline, "1.00 | 1.00 | 1.00 | 1.00", ""));
    lines.push(
      row(
        "Gatehouse",
        r.gatehouse,
        `${r.ratio.requestsPerSecond.toFixed(2)} | ${fixed(r.ratio.cpuNormalised, 2)} | ${r.ratio.p50.toFixed(2)} | ${r.ratio.p99.toFixed(2)}`,
        `${fixed(r.gatehouseRssMB, 0)} (${fixed(r.gatehousePeakRssMB, 0)})`,
      ),
    );
  }
  lines.push(
    "",
    "Targets:",
    `- verify at least 0.70x the bare route: requests/s ${met(targets.ratioAtLeast70Percent)} (${list(ratios)}); CPU ${met(targets.cpuRatioAtLeast70Percent)} (${list(cpuRatios)})`,
    `- same ratio at every key count, within 10%: requests/s ${met(targets.ratioSameWithin10Percent)} (spread ${(targets.ratioSpread * 100).toFixed(1)}%); CPU ${met(targets.cpuRatioSameWithin10Percent)} (spread ${(targets.cpuRatioSpread * 100).toFixed(1)}%)`,
    `- RSS under 200 MB with 1,000,000 keys: ${met(targets.rssUnder200MB)} (${fixed(targets.rssMBAtMillionKeys, 0)} MB)`,
    "",
  );
  return { json, markdown: lines.join("\n") };
}

export function writeResults(summary: ReturnType<typeof summarise>): void {
  const dir = new URL("./results/", import.meta.url);
  mkdirSync(dir, { recursive: true });
  writeFileSync(new URL("latest.json", dir), `${JSON.stringify(summary.json, null, 2)}\n`);
  writeFileSync(new URL("latest.md", dir), summary.markdown);
}
