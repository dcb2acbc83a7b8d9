/**
 * `node bench/signin-loop.ts`: the `auth` part's sign-in measurement alone, repeated
 * (BENCH_ROUNDS, default 3): sign-ins per second against the argon2id limit measured
 * right before each round, and the p99 of GET /healthz and GET /auth/me at a steady
 * trickle, alone and while sign-ins run. GATEHOUSE_* variables reach the server (GATEHOUSE_THREADPOOL_NICE=0
 * to compare without the pool's lower priority). The loop to iterate with; the method is
 * in docs/benchmarks.md.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBenchUser, LOGIN_ENV, measureArgonLimit, measureSignIns, signIn } from "./auth-part.ts";
import { initStore, pinSelf, placeServer, startBaseline, startGatehouse } from "./servers.ts";

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const log = (line: string) => console.log(line);
const baseline = await startBaseline();
const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-signin-loop-"));
const adminKey = initStore(dataDir, LOGIN_ENV);
const gatehouse = await startGatehouse(dataDir, { env: LOGIN_ENV });
try {
  const email = "signin-loop@example.com";
  await createBenchUser(gatehouse.url, adminKey, email);
  const first = await signIn(gatehouse.url, email);
  for (let round = 0; round < rounds; round++) {
    // Paired, as in `npm run bench`: the limit right before each round of sign-ins.
    pinSelf();
    placeServer(gatehouse.pid, "server-core");
    const limit = await measureArgonLimit("any-core", LOGIN_ENV);
    log(
      `one hash ${limit.hashMs.toFixed(1)} ms; ${limit.threads} at once: ${limit.hashesPerSecond.toFixed(1)} hashes/s`,
    );
    pinSelf("any-core");
    placeServer(gatehouse.pid, "any-core");
    await measureSignIns(baseline, gatehouse, {
      email,
      accessToken: first.access_token,
      limit,
      durationSeconds: 6,
      connections: 16,
      log,
    });
  }
} finally {
  await gatehouse.stop();
  await baseline.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
