/**
 * Child processes under test. Each server gets core 0 and the load generator (this
 * process) core 1, when `taskset` is available, so neither steals the other's CPU.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { shebangNodeFlags } from "../test/support/node-flags.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
export const SERVER_CORE = "0";
export const LOADGEN_CORE = "1";

export const hasTaskset = spawnSync("taskset", ["--version"]).status === 0;

const ALL_CORES = `0-${Math.max(0, cpus().length - 1)}`;

/** Pins this process (all its threads) to the load generator's core, or frees it ("any-core"). */
export function pinSelf(placement: Placement = "server-core"): boolean {
  return pin(process.pid, placement === "server-core" ? LOADGEN_CORE : ALL_CORES);
}

/** Moves a running server (all its threads, libuv's pool included) to its core or to any core. */
export function placeServer(pid: number, placement: Placement): boolean {
  return pin(pid, placement === "server-core" ? SERVER_CORE : ALL_CORES);
}

function pin(pid: number, cores: string): boolean {
  if (!hasTaskset) return false;
  return spawnSync("taskset", ["-a", "-p", "-c", cores, String(pid)]).status === 0;
}

export interface ServerProcess {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

function extraNodeArgs(): string[] {
  return (process.env.BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
}

/**
 * Where a server may run: "server-core" (core 0, the load generator on core 1) or
 * "any-core" (the whole machine, for several nodes or work spread over threads).
 */
export type Placement = "server-core" | "any-core";

export function launch(
  args: string[],
  env: NodeJS.ProcessEnv,
  placement: Placement = "server-core",
  options: { nodeFlags?: readonly string[] } = {},
): ChildProcess {
  // The script's own flags first, so BENCH_NODE_ARGS can override them.
  const command = [process.execPath, ...(options.nodeFlags ?? []), ...extraNodeArgs(), ...args];
  // Explicit either way: a child inherits this process's affinity (the load generator's core).
  const cores = placement === "server-core" ? SERVER_CORE : ALL_CORES;
  const [file, ...rest] = hasTaskset ? ["taskset", "-c", cores, ...command] : command;
  // taskset execs node, so the child's pid is the server's pid.
  return spawn(file as string, rest, { cwd: ROOT, env, stdio: ["ignore", "pipe", "inherit"] });
}

function stopper(child: ChildProcess): () => Promise<void> {
  return () =>
    new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once("exit", () => resolve());
      child.kill("SIGTERM");
    });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited early with code ${child.exitCode}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) return;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`server at ${url} did not become healthy`);
}

export function gatehouseBin(): string {
  const root = process.env.BENCH_GATEHOUSE_DIR ?? ROOT;
  // Checkouts from before the JavaScript launcher started from bin/gatehouse.ts.
  const launcher = join(root, "bin/gatehouse.js");
  return existsSync(launcher) ? launcher : join(root, "bin/gatehouse.ts");
}

/** `gatehouse init --json` on a store: the admin key. */
export function initStore(dataDir: string, env: NodeJS.ProcessEnv = {}): string {
  const result = spawnSync(process.execPath, [...shebangNodeFlags(gatehouseBin()), gatehouseBin(), "init", "--json"], {
    cwd: ROOT,
    env: { ...process.env, ...env, GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_LOG_LEVEL: "warn" },
    encoding: "utf8",
  });
  const parsed: unknown = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "null");
  if (result.status !== 0 || typeof parsed !== "object" || parsed === null || !("adminKey" in parsed)) {
    throw new Error(`gatehouse init failed: ${result.stderr}`);
  }
  return String(parsed.adminKey);
}

/** A script of this directory in a child process that prints one line (its URL or result) on stdout. */
export async function startScript(
  script: string,
  env: NodeJS.ProcessEnv,
  placement: Placement = "server-core",
): Promise<ServerProcess & { line: string }> {
  const child = launch([join(ROOT, script)], { ...process.env, ...env }, placement);
  const line = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.once("exit", (code) => reject(new Error(`${script} exited with code ${code}`)));
    child.stdout?.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      const first = out.split("\n")[0];
      if (out.includes("\n") && first) resolve(first.trim());
    });
  });
  return { url: line, line, pid: child.pid as number, stop: stopper(child) };
}

/**
 * Starts `bin/gatehouse.js serve` from this checkout, or from BENCH_GATEHOUSE_DIR (another
 * checkout, e.g. a `git worktree` of an older commit) to compare versions in one run.
 */
export async function startGatehouse(
  dataDir: string,
  options: { env?: NodeJS.ProcessEnv; placement?: Placement } = {},
): Promise<ServerProcess> {
  const port = await freePort();
  const child = launch(
    [gatehouseBin(), "serve"],
    {
      ...process.env,
      ...options.env,
      GATEHOUSE_DATA_DIR: dataDir,
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_HOST: "127.0.0.1",
      GATEHOUSE_LOG_LEVEL: "warn",
    },
    options.placement,
    // As `npx gatehouse serve` starts it: with the flags of its shebang line.
    { nodeFlags: shebangNodeFlags(gatehouseBin()) },
  );
  child.stdout?.pipe(process.stderr);
  const url = `http://127.0.0.1:${port}`;
  await waitForHealth(url, child);
  return { url, pid: child.pid as number, stop: stopper(child) };
}

/** The bare route; `extraWorkMicros` makes its verify route spin that long per request. */
export async function startBaseline(extraWorkMicros = 0): Promise<ServerProcess> {
  return startScript("bench/baseline-server.ts", { BENCH_EXTRA_WORK_MICROS: String(extraWorkMicros) });
}

/** Resident and peak resident set size in MB, from /proc (Linux only; null elsewhere). */
export function memoryOf(pid: number): { rssMB: number; peakRssMB: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
    return { rssMB: kb("VmRSS") / 1024, peakRssMB: kb("VmHWM") / 1024 };
  } catch {
    return null;
  }
}

/** The name and CPU seconds (user, system) in a /proc `stat` line; ticks are USER_HZ, 100 on Linux. */
function parseStat(stat: string): { name: string; user: number; system: number } {
  // After the name (in parentheses, which may hold spaces): state first, utime and stime 12th and 13th.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    name: stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")")),
    user: Number(fields[11]) / 100,
    system: Number(fields[12]) / 100,
  };
}

/** CPU seconds a process has used so far in user and in system mode, from /proc/<pid>/stat. */
export function cpuTimesOf(pid: number): { user: number; system: number } | null {
  try {
    const { user, system } = parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
    return { user, system };
  } catch {
    return null;
  }
}

/** CPU seconds of each thread of a process so far, with the thread's name and id (Linux). */
export function threadCpuTimesOf(pid: number): Array<{ tid: number; name: string; user: number; system: number }> {
  return readdirSync(`/proc/${pid}/task`).map((tid) => ({
    tid: Number(tid),
    ...parseStat(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")),
  }));
}

/** CPU seconds (user + system) a process has used so far. */
export function cpuSecondsOf(pid: number): number | null {
  const times = cpuTimesOf(pid);
  return times === null ? null : times.user + times.system;
}
