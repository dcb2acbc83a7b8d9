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
 *
 * To compare settings, BENCH_VARIANTS runs one server after another on copies of the same
 * seeded store: variants separated by `;`, each a list of node flags and NAME=value
 * settings for the server, `base` for none; e.g.
 * `BENCH_VARIANTS="base;--max-old-space-size=4096;GATEHOUSE_USAGE_FLUSH_MS=5000;base"`.
 * Alternate them (the machine drifts) and repeat. BENCH_SEED_DIR keeps the seeded store
 * there and reuses it on later runs (its keys expire 30 days after seeding), which saves
 * the ~40 s of seeding a million keys.
 */
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
const seedDir = process.env.BENCH_SEED_DIR;
const variants = (process.env.BENCH_VARIANTS ?? "base").split(";").map((variant) => variant.trim());

/** The seeded store (kept in BENCH_SEED_DIR when set) and the keys to load it with. */
async function seeded(): Promise<{ store: string; serviceKey: string; keys: string[]; keep: boolean }> {
  const meta = seedDir ? join(seedDir, "keys.json") : null;
  if (seedDir && meta && existsSync(meta)) {
    const saved = JSON.parse(readFileSync(meta, "utf8")) as { serviceKey: string; keys: string[] };
    if (saved.keys.length === keyCount) {
      process.stdout.write(`reusing the ${keyCount} keys seeded in ${seedDir}\n`);
      return { store: join(seedDir, "store"), ...saved, keep: true };
    }
  }
  const data = await seed(generateKeys(keyCount));
  process.stdout.write(`seeded ${keyCount} keys in ${data.seedSeconds.toFixed(0)} s\n`);
  if (!seedDir || !meta) return { store: data.dataDir, serviceKey: data.serviceKey, keys: data.keys, keep: false };
  rmSync(seedDir, { recursive: true, force: true });
  cpSync(data.dataDir, join(seedDir, "store"), { recursive: true });
  writeFileSync(meta, JSON.stringify({ serviceKey: data.serviceKey, keys: data.keys }));
  rmSync(data.dataDir, { recursive: true, force: true });
  return { store: join(seedDir, "store"), serviceKey: data.serviceKey, keys: data.keys, keep: true };
}

const data = await seeded();
const template = requestTemplate(data.serviceKey, data.keys, SEED_SCOPES.slice(0, 1));
const extraArgs = process.env.BENCH_NODE_ARGS ?? "";
try {
  for (const variant of variants) {
    const tokens = variant === "base" || variant === "" ? [] : variant.split(/\s+/);
    const env = Object.fromEntries(
      tokens.filter((token) => /^[A-Z][A-Z0-9_]*=/.test(token)).map((token) => token.split(/=(.*)/s).slice(0, 2)),
    );
    // servers.ts reads BENCH_NODE_ARGS when it starts a server.
    process.env.BENCH_NODE_ARGS = [extraArgs, ...tokens.filter((token) => token.startsWith("-"))].join(" ").trim();
    // Every server gets a fresh copy: a run's usage writes must not reach the next one.
    const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-memory-"));
    cpSync(data.store, dataDir, { recursive: true });
    const gatehouse = await startGatehouse(dataDir, { env });
    try {
      if (variants.length > 1) process.stdout.write(`\n== ${variant}\n`);
      report("after start", gatehouse.pid);
      const load = await measure(gatehouse, template, { connections: 50, pipelining: 1, durationSeconds });
      process.stdout.write(
        `verify load: ${load.requestsPerSecond.toFixed(0)} req/s for ${durationSeconds} s, ${load.cpuMicrosPerRequest?.toFixed(0)} µs of CPU per request, p99 ${load.p99Ms} ms, non-2xx ${load.non2xx}\n`,
      );
      report("after the load", gatehouse.pid);
    } finally {
      await gatehouse.stop();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }
} finally {
  if (!data.keep) rmSync(data.store, { recursive: true, force: true });
}
