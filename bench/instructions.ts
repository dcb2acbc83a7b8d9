/**
 * `node bench/instructions.ts`: instructions per request of `POST /v1/keys/verify`, for
 * Gatehouse (1,000 keys stored, BENCH_KEYS to change) and for the bare Fastify route, each
 * server run under `valgrind --tool=callgrind`. Unlike CPU time, an instruction count does
 * not depend on what else the machine is doing, so two versions of the code can be
 * compared on a shared, noisy machine (BENCH_GATEHOUSE_DIR serves another checkout).
 *
 * What it counts: user-space instructions of every thread of the server process (V8's
 * compiler and GC threads included) while a fixed number of requests is answered, after a
 * warm-up. Not counted: the kernel (socket reads and writes, and the cost of waking the
 * load generator, which the CPU ratio of `npm run bench` does include). So this ratio says
 * how much of the work is ours and Fastify's, not how fast the route is.
 *
 * The first round after the warm-up still runs high as V8 optimizes, so the figure reported
 * is the last round's. Measured three times (50,000 warm-up requests, rounds of 10,000):
 * the bare route's last rounds were 80-82k instructions per request, Gatehouse's 194-216k
 * (its rounds move by up to ~20%, with its garbage collections and usage writes). Compare
 * two versions with the same settings, and repeat before trusting a few percent.
 *
 * BENCH_REQUESTS (per round, default 10,000), BENCH_ROUNDS (default 3), BENCH_WARMUP
 * (requests, default 50,000). Needs valgrind (on every machine kind here). ~7 minutes.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { shebangNodeFlags } from "../test/support/node-flags.ts";
import { requestTemplate, type Template } from "./load.ts";
import { generateKeys, SEED_SCOPES, seed } from "./seed.ts";
import { gatehouseBin } from "./servers.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const requests = Number(process.env.BENCH_REQUESTS ?? 10_000);
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const warmup = Number(process.env.BENCH_WARMUP ?? 50_000);
const keyCount = Number(process.env.BENCH_KEYS ?? 1_000);
const CONNECTIONS = 10;

if (spawnSync("valgrind", ["--version"]).status !== 0) {
  process.stderr.write("valgrind is needed (apt-get install -y valgrind)\n");
  process.exit(2);
}

interface Server {
  child: ChildProcess;
  url: string;
  outFile: string;
}

/** A server under callgrind, instrumentation off until the warm-up is over. */
async function underCallgrind(args: string[], env: NodeJS.ProcessEnv, urlFrom: "stdout" | string): Promise<Server> {
  const outDir = mkdtempSync(join(tmpdir(), "gatehouse-callgrind-"));
  const outFile = join(outDir, "callgrind.out");
  const child = spawn(
    "valgrind",
    [
      "--tool=callgrind",
      "--instr-atstart=no",
      // V8 writes the code it runs: valgrind must notice.
      "--smc-check=all-non-file",
      `--callgrind-out-file=${outFile}`,
      process.execPath,
      ...args,
    ],
    { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] },
  );
  let url = urlFrom === "stdout" ? "" : urlFrom;
  if (urlFrom === "stdout") {
    url = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.once("exit", (code) => reject(new Error(`server exited with code ${code}`)));
      child.stdout?.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes("\n")) resolve((out.split("\n")[0] as string).trim());
      });
    });
  }
  const deadline = Date.now() + 300_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/healthz`)).status < 500) break;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${url} did not answer under valgrind`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  return { child, url, outFile };
}

function callgrind(server: Server, command: string[]): void {
  const result = spawnSync("callgrind_control", [...command, String(server.child.pid)], { encoding: "utf8" });
  if (result.status !== 0) throw new Error(`callgrind_control ${command.join(" ")}: ${result.stderr}`);
}

/** Sends `count` requests over CONNECTIONS connections; all must be answered 2xx. */
async function drive(url: string, count: number, template: Template): Promise<void> {
  const result = await autocannon({ url, connections: CONNECTIONS, amount: count, timeout: 60, requests: [template] });
  const failed = result.non2xx + result.errors + result.timeouts;
  if (failed > 0) throw new Error(`${failed} of ${count} requests failed`);
}

/** Instructions per request, measured `rounds` times after a warm-up. */
async function measureServer(name: string, server: Server, template: Template): Promise<number[]> {
  callgrind(server, ["-i", "on"]);
  await drive(server.url, warmup, template);
  const perRequest: number[] = [];
  for (let round = 0; round < rounds; round++) {
    callgrind(server, ["-z"]);
    await drive(server.url, requests, template);
    callgrind(server, ["-d"]);
    // Dumps are numbered: the newest file of this server's dumps.
    const dumps = spawnSync("sh", ["-c", `ls -t ${server.outFile}.* | head -1`], { encoding: "utf8" }).stdout.trim();
    const totals = /^totals:\s+(\d+)/m.exec(readFileSync(dumps, "utf8"));
    if (!totals) throw new Error(`no totals in ${dumps}`);
    perRequest.push(Number(totals[1]) / requests);
    process.stdout.write(
      `${name} round ${round + 1}: ${Math.round(perRequest.at(-1) as number)} instructions/request\n`,
    );
  }
  return perRequest;
}

function stop(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.child.once("exit", () => resolve());
    server.child.kill("SIGTERM");
  });
}

const generated = generateKeys(keyCount);
const data = await seed(generated);
// The requests of `npm run bench`: random stored keys, the caller's key in Authorization
// (the bare route ignores it).
const template = requestTemplate(data.serviceKey, generated.keys, SEED_SCOPES.slice(0, 1));
try {
  const bare = await underCallgrind([join(ROOT, "bench/baseline-server.ts")], process.env, "stdout");
  const bareCounts = await measureServer("bare Fastify", bare, template);
  await stop(bare);

  const port = 20_000 + Math.floor(Math.random() * 20_000);
  const gatehouse = await underCallgrind(
    [...shebangNodeFlags(gatehouseBin()), gatehouseBin(), "serve"],
    {
      ...process.env,
      GATEHOUSE_DATA_DIR: data.dataDir,
      GATEHOUSE_PORT: String(port),
      GATEHOUSE_HOST: "127.0.0.1",
      GATEHOUSE_LOG_LEVEL: "warn",
    },
    `http://127.0.0.1:${port}`,
  );
  const gatehouseCounts = await measureServer("Gatehouse", gatehouse, template);
  await stop(gatehouse);

  // The last round: the most warmed-up (see the header).
  const bareLast = bareCounts.at(-1) as number;
  const gatehouseLast = gatehouseCounts.at(-1) as number;
  process.stdout.write(
    `\nPOST /v1/keys/verify, ${keyCount} keys, last of ${rounds} rounds of ${requests} requests: bare ${Math.round(bareLast)}, Gatehouse ${Math.round(gatehouseLast)} instructions/request; ratio ${(bareLast / gatehouseLast).toFixed(2)}x\n`,
  );
} finally {
  rmSync(data.dataDir, { recursive: true, force: true });
}
