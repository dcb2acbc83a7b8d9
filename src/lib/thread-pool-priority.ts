import { randomFill } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { setPriority } from "node:os";

/**
 * Gives libuv's thread pool a lower scheduling priority than the event loop (a nice value
 * per thread: on Linux, `setpriority` on a thread id changes that thread only). The pool
 * is where argon2id hashes (and access tokens are signed); the event loop is where every
 * other request is answered. With 2 cores and 3 hashes running, the event loop otherwise
 * gets a fair quarter of the CPU and other routes' p99 grows with sign-ins; at nice 10 a
 * pool thread weighs a tenth of the event loop, so the loop runs when it has work and the
 * hashes get every cycle it leaves. Linux only; elsewhere, or if the kernel refuses, the
 * pool keeps the process's priority. Returns how many threads were changed.
 */
export async function lowerThreadPoolPriority(nice: number): Promise<number> {
  if (process.platform !== "linux" || nice <= 0) return 0;
  // libuv starts all of its threads with the first job: make sure they exist.
  await new Promise<void>((resolve) => randomFill(Buffer.alloc(1), () => resolve()));
  let changed = 0;
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() !== "libuv-worker") continue;
      setPriority(Number(tid), nice);
      changed++;
    } catch {
      // A thread that has ended, or a kernel that refuses: it keeps its priority.
    }
  }
  return changed;
}
