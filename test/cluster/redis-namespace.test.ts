import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { after, describe, test } from "node:test";
import { loadConfig } from "../../src/config/config.ts";
import { openRuntime, type Runtime } from "../../src/runtime.ts";
import { LoginThrottle } from "../../src/users/login-throttle.ts";
import { tempDir } from "../support/backends.ts";

/**
 * Two Gatehouse stores pointed at one Redis (staging and production, or every test database
 * on one machine) keep their brakes apart: each store claims a namespace of its own. They
 * shared them before, so one store's failed sign-ins from an address blocked it on the other.
 */
/** Fail closed: a limiter asked before its Redis connection is up throws rather than counting in memory. */
const REDIS = { GATEHOUSE_REDIS_URL: "redis://127.0.0.1:6379", GATEHOUSE_RATE_LIMIT_FAIL_CLOSED: "true" };

/** `work` once the limiter's Redis connection is up (until then it throws: fail closed). */
async function whenConnected<T>(work: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await work();
    } catch (error) {
      if (attempt >= 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe("stores sharing one Redis", () => {
  const dirs: string[] = [];
  const runtimes: Runtime[] = [];
  after(async () => {
    for (const runtime of runtimes) {
      await runtime.close();
      await runtime.storage.close();
    }
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  async function open(): Promise<Runtime> {
    const dir = tempDir();
    dirs.push(dir);
    const runtime = await openRuntime(loadConfig({ GATEHOUSE_DATA_DIR: dir, ...REDIS }));
    runtimes.push(runtime);
    return runtime;
  }

  test("each store brakes on its own counts; nodes of one store share theirs", async () => {
    const [first, second] = [await open(), await open()];
    const again = await openRuntime(loadConfig({ GATEHOUSE_DATA_DIR: dirs[0] as string, ...REDIS }));
    runtimes.push(again);
    const settings = { freeFailuresPerAccount: 2, freeFailuresPerIp: 1000, maxDelaySeconds: 8, knownAddressDays: 1 };
    const pairKey = randomBytes(32);
    const throttle = (runtime: Runtime) =>
      new LoginThrottle(settings, { factory: runtime.limiterFactory, pairKey: () => pairKey });
    const subject = { account: `shared-${randomBytes(4).toString("hex")}@example.com`, ip: "192.0.2.44" };
    const onFirst = throttle(first);
    for (let i = 0; i < 3; i++) assert.equal(await whenConnected(() => onFirst.admit(subject)), 0);
    assert.equal(await onFirst.admit(subject), 1, "braked on its own store");
    assert.equal(await whenConnected(() => throttle(again).admit(subject)), 1, "and on another node of the same store");
    assert.equal(await whenConnected(() => throttle(second).admit(subject)), 0, "not on another store");
  });
});
