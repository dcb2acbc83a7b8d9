/**
 * `node bench/signin-threads.ts`: where a sign-in's CPU goes, by thread. Sign-ins run
 * against one server (16 connections, BENCH_ROUNDS rounds of 8 s, default 2), and each
 * thread's user and system time is read from /proc before and after: the event loop
 * ("main"), libuv's pool (argon2id and the access token's signature), and the rest
 * (V8's GC and compiler threads). Compare the pool's share with the argon2id limit that
 * `npm run bench` prints: whatever the other threads spend per sign-in is CPU the hashes
 * cannot have. Linux only. GATEHOUSE_* variables reach the server.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBenchUser, LOGIN_ENV, loginTemplate } from "./auth-part.ts";
import { measure } from "./load.ts";
import { initStore, pinSelf, placeServer, startGatehouse, threadCpuTimesOf } from "./servers.ts";

/** CPU seconds per thread group: "main" (the event loop), "libuv-worker", and the other threads by name. */
function threadTimes(pid: number): Map<string, { user: number; system: number }> {
  const groups = new Map<string, { user: number; system: number }>();
  for (const thread of threadCpuTimesOf(pid)) {
    const name = thread.tid === pid ? "main" : thread.name;
    const group = groups.get(name) ?? { user: 0, system: 0 };
    group.user += thread.user;
    group.system += thread.system;
    groups.set(name, group);
  }
  return groups;
}

const rounds = Number(process.env.BENCH_ROUNDS ?? 2);
const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-signin-threads-"));
const adminKey = initStore(dataDir, LOGIN_ENV);
const gatehouse = await startGatehouse(dataDir, { env: LOGIN_ENV });
try {
  const email = "signin-threads@example.com";
  await createBenchUser(gatehouse.url, adminKey, email);
  pinSelf("any-core");
  placeServer(gatehouse.pid, "any-core");
  // Warm-up: JIT, pool threads, prepared statements.
  await measure(gatehouse, loginTemplate(email), { connections: 8, pipelining: 1, durationSeconds: 2 });
  for (let round = 0; round < rounds; round++) {
    const before = threadTimes(gatehouse.pid);
    const run = await measure(gatehouse, loginTemplate(email), { connections: 16, pipelining: 1, durationSeconds: 8 });
    const after = threadTimes(gatehouse.pid);
    const perSignIn = (seconds: number) => Math.round((seconds * 1e6) / Math.max(1, run.requests));
    const parts: string[] = [];
    for (const [name, end] of after) {
      const start = before.get(name) ?? { user: 0, system: 0 };
      const user = perSignIn(end.user - start.user);
      const system = perSignIn(end.system - start.system);
      if (user + system > 0) parts.push(`${name} ${user} + ${system}`);
    }
    console.log(
      `${run.requestsPerSecond.toFixed(1)} sign-ins/s, non-2xx ${run.non2xx}; CPU µs per sign-in, user + system: ${parts.join("; ")}`,
    );
  }
} finally {
  await gatehouse.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
