/**
 * The argon2id hashing limit of a sign-in server, measured where the server runs (same
 * cores, same thread pool): the time of one hash alone, then hashes per second with as
 * many running at once as libuv has threads (UV_THREADPOOL_SIZE, default 4). Parameters
 * are the server's (GATEHOUSE_ARGON2_*, src/users/password-hasher.ts). Prints one JSON line.
 */
import { loadConfig } from "../src/config/config.ts";
import { PasswordHasher } from "../src/users/password-hasher.ts";
import { completionsPerSecond } from "./rate.ts";

const seconds = Number(process.env.BENCH_ARGON2_SECONDS ?? 4);
const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
const parameters = loadConfig().auth.password.argon2;
// The limit is what the pool can hash with every thread busy: the server's hasher leaves
// one thread free (pool size − 1 at once), so this one is given the whole pool, and the
// sign-in figure is judged against the machine's capacity, not against the cap.
const hasher = new PasswordHasher(parameters, { maxConcurrent: threads });
const stored = await hasher.hash("correct horse battery staple 42");

// One at a time: the latency of a sign-in's hash with nothing else running.
const alone: number[] = [];
for (let i = 0; i < 8; i++) {
  const started = performance.now();
  await hasher.verify(stored, "correct horse battery staple 42");
  alone.push(performance.now() - started);
}
alone.sort((a, b) => a - b);
const hashMs = alone[alone.length >> 1] as number;

// `threads` at once, for `seconds`: what the pool can do (verify is what sign-in runs).
const hashesPerSecond = await completionsPerSecond(threads, seconds, () =>
  hasher.verify(stored, "correct horse battery staple 42"),
);
process.stdout.write(
  `${JSON.stringify({ parameters, threads, hashMs, fromHashTime: threads * (1000 / hashMs), hashesPerSecond })}\n`,
);
