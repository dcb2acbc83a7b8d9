/**
 * `node bench/memory-breakdown.ts`: what the resident set of `gatehouse serve` is made of,
 * with BENCH_KEYS keys stored (default 1,000,000), after start and after a verify load.
 * Reads /proc/<pid>/smaps (Linux only) and sums the resident pages by kind of mapping:
 *
 * - `node binary`: Node's executable, mapped from disk (the pages touched so far);
 * - `heap (brk)`: the main thread's malloc arena (SQLite's caches, Node's and OpenSSL's
 *   buffers);
 * - `anon < 1 MB`: mostly V8's heap (it maps 256 KB pages);
 * - `anon 1-8 MB` and `anon >= 8 MB`: large allocations (the key index's arrays are the
 *   >= 8 MB ones), thread stacks and other threads' malloc arenas, the WAL checkpointer's
 *   worker thread once it runs (~17 MB);
 * - `files`: SQLite's shared-memory index and other mapped files.
 *
 * BENCH_KEYS, BENCH_DURATION (s of load, default 10), BENCH_NODE_ARGS (e.g. `--trace-gc`).
 */
import { readFileSync, rmSync } from "node:fs";
import { measure, requestTemplate } from "./load.ts";
import { generateKeys, SEED_SCOPES, seed } from "./seed.ts";
import { memoryOf, pinSelf, startGatehouse } from "./servers.ts";

const keyCount = Number(process.env.BENCH_KEYS ?? 1_000_000);
const durationSeconds = Number(process.env.BENCH_DURATION ?? 10);

function breakdown(pid: number): Record<string, number> {
  const totals = new Map<string, number>();
  let kind = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const mapping = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      const [, from, to, name = ""] = mapping;
      const megabytes = (Number.parseInt(to as string, 16) - Number.parseInt(from as string, 16)) / 1048576;
      if (name.endsWith("/node") || name.includes("/bin/node")) kind = "node binary";
      else if (name === "[heap]") kind = "heap (brk)";
      else if (name.startsWith("/")) kind = "files";
      else if (name === "") kind = megabytes >= 8 ? "anon >= 8 MB" : megabytes >= 1 ? "anon 1-8 MB" : "anon < 1 MB";
      else kind = "other";
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss) totals.set(kind, (totals.get(kind) ?? 0) + Number(rss[1]) / 1024);
  }
  return Object.fromEntries([...totals].sort((a, b) => b[1] - a[1]).map(([name, mb]) => [name, Math.round(mb)]));
}

function report(label: string, pid: number): void {
  const threads = /Threads:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  const rss = memoryOf(pid);
  process.stdout.write(
    `${label}: RSS ${rss?.rssMB.toFixed(0)} MB (peak ${rss?.peakRssMB.toFixed(0)}), ${threads} threads\n`,
  );
  for (const [kind, mb] of Object.entries(breakdown(pid))) process.stdout.write(`  ${kind.padEnd(14)} ${mb} MB\n`);
}

pinSelf("server-core");
const data = await seed(generateKeys(keyCount));
process.stdout.write(`seeded ${keyCount} keys in ${data.seedSeconds.toFixed(0)} s\n`);
const gatehouse = await startGatehouse(data.dataDir);
try {
  report("after start", gatehouse.pid);
  const template = requestTemplate(data.serviceKey, data.keys, SEED_SCOPES.slice(0, 1));
  const load = await measure(gatehouse, template, { connections: 50, pipelining: 1, durationSeconds });
  process.stdout.write(
    `verify load: ${load.requestsPerSecond.toFixed(0)} req/s for ${durationSeconds} s, ${load.cpuMicrosPerRequest?.toFixed(0)} µs of CPU per request, non-2xx ${load.non2xx}\n`,
  );
  report("after the load", gatehouse.pid);
} finally {
  await gatehouse.stop();
  rmSync(data.dataDir, { recursive: true, force: true });
}
