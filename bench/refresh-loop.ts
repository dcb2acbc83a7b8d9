/**
 * `node bench/refresh-loop.ts`: refresh rotations alone, quickly (no sign-in or guarded-route
 * measurements, no bare route), with the CPU time per rotation of the whole server and of
 * its main thread (the event loop) apart. The method is the `auth` part's (see
 * docs/benchmarks.md); this is the loop to iterate with.
 *
 * BENCH_PLACEMENT: "any-core" (default, as the `auth` part) or "server-core" (core 0);
 * BENCH_ROUNDS (default 3), BENCH_DURATION (s, default 5), BENCH_CONNECTIONS (default 50),
 * BENCH_GATEHOUSE_DIR (another checkout), BENCH_NODE_ARGS, GATEHOUSE_JWT_ALG.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createBenchUser, LOGIN_ENV, refreshTemplate, signInMany } from "./auth-part.ts";
import { measure } from "./load.ts";
import { initStore, type Placement, pinSelf, startGatehouse } from "./servers.ts";

const placement: Placement = process.env.BENCH_PLACEMENT === "server-core" ? "server-core" : "any-core";
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const durationSeconds = Number(process.env.BENCH_DURATION ?? 5);
const connections = Number(process.env.BENCH_CONNECTIONS ?? 50);

/** CPU seconds of one thread (the main thread's id is the process id). */
function threadCpuSeconds(pid: number, tid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

pinSelf(placement);
const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-refresh-loop-"));
const adminKey = initStore(dataDir, LOGIN_ENV);
const gatehouse = await startGatehouse(dataDir, { env: LOGIN_ENV, placement });
try {
  const email = "refresh-loop@example.com";
  await createBenchUser(gatehouse.url, adminKey, email);
  const pool: string[] = [];
  const topUp = async () => {
    const missing = connections + 10 - pool.length;
    if (missing > 0) pool.push(...(await signInMany(gatehouse.url, email, missing)).map((p) => p.refresh_token));
  };
  const template = refreshTemplate(pool);
  await topUp();
  await measure(gatehouse, template, { connections, pipelining: 1, durationSeconds: 2 });
  process.stdout.write(
    `refresh rotations, ${process.env.GATEHOUSE_JWT_ALG ?? "RS256"}, ${placement}, ${connections} connections\n`,
  );
  for (let round = 0; round < rounds; round++) {
    await topUp();
    const mainBefore = threadCpuSeconds(gatehouse.pid, gatehouse.pid);
    const m = await measure(gatehouse, template, { connections, pipelining: 1, durationSeconds });
    const mainMicros = ((threadCpuSeconds(gatehouse.pid, gatehouse.pid) - mainBefore) * 1e6) / m.requests;
    process.stdout.write(
      `round ${round + 1}: ${m.requestsPerSecond.toFixed(0)} rotations/s; CPU µs per rotation ${m.cpuMicrosPerRequest?.toFixed(0)} (event loop ${mainMicros.toFixed(0)}); server ${m.serverCpu?.toFixed(2)} cores; p99 ${m.p99Ms} ms; non-2xx ${m.non2xx + m.errors}; pool ran dry ${template.lost()}; load average ${loadavg()[0]?.toFixed(1)}\n`,
    );
  }
} finally {
  await gatehouse.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
