import assert from "node:assert/strict";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { test } from "node:test";
import { tempDir } from "../support/backends.ts";
import { runCli, startNode } from "../support/processes.ts";

/** Name and nice value of every thread of `pid` (Linux /proc). */
function threads(pid: number): Array<{ name: string; nice: number }> {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    // Fields after the parenthesised name; nice is field 19 of stat(5), the 17th after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { name: readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim(), nice: Number(fields[16]) };
  });
}

async function ready(node: { logs(): string }): Promise<void> {
  for (let i = 0; i < 100 && !node.logs().includes("Gatehouse is ready"); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.match(node.logs(), /Gatehouse is ready/);
}

/** Runs `check` on the threads of a `gatehouse serve` started on a new store with `env`. */
async function withServeThreads(
  env: Record<string, string>,
  check: (threads: Array<{ name: string; nice: number }>) => void,
): Promise<void> {
  const dir = tempDir();
  try {
    assert.equal((await runCli(["init", "--json"], { GATEHOUSE_DATA_DIR: dir })).code, 0);
    const node = await startNode({ GATEHOUSE_DATA_DIR: dir, ...env });
    try {
      await ready(node);
      check(threads(node.child.pid as number));
    } finally {
      await node.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const linux = process.platform === "linux";

for (const [setting, expected] of [
  [undefined, 10],
  ["0", 0],
  ["15", 15],
] as const) {
  test(`serve: libuv's pool threads run at nice ${expected}, the event loop at 0 (GATEHOUSE_THREADPOOL_NICE=${setting ?? "unset"})`, {
    skip: !linux,
  }, async () => {
    await withServeThreads(setting === undefined ? {} : { GATEHOUSE_THREADPOOL_NICE: setting }, (all) => {
      const pool = all.filter((thread) => thread.name === "libuv-worker");
      assert.ok(pool.length >= 4, `expected libuv's pool, saw ${all.map((t) => t.name).join(", ")}`);
      assert.deepEqual(new Set(pool.map((thread) => thread.nice)), new Set([expected]));
      assert.equal(all.find((thread) => thread.name === "MainThread")?.nice, 0);
    });
  });
}

for (const [setting, expected] of [
  [undefined, 4],
  ["5", 5],
] as const) {
  // libuv's default of 4 (3 hashes at once, one thread free), or what the operator set:
  // 5 lets 4 hash at once, more sign-ins a second at the cost of other routes' p99
  // (docs/auth.md, "Passwords").
  test(`serve: libuv's pool has ${expected} threads (UV_THREADPOOL_SIZE=${setting ?? "unset"})`, {
    // Unset means unset in this test's own environment too (libuv reads "" as 1 thread).
    skip: !linux || (setting === undefined && process.env.UV_THREADPOOL_SIZE !== undefined),
  }, async () => {
    await withServeThreads(setting === undefined ? {} : { UV_THREADPOOL_SIZE: setting }, (all) => {
      assert.equal(all.filter((thread) => thread.name === "libuv-worker").length, expected);
    });
  });
}

test("GATEHOUSE_THREADPOOL_NICE outside 0–19 refuses to start", async () => {
  const dir = tempDir();
  try {
    const result = await runCli(["serve"], { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_THREADPOOL_NICE: "20" });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /GATEHOUSE_THREADPOOL_NICE/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
