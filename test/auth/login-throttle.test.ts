import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { after, before, describe, test } from "node:test";
import type { Redis } from "ioredis";
import { StorageUnavailableError } from "../../src/errors/gatehouse-error.ts";
import { createRedisClient } from "../../src/storage/redis/redis-client.ts";
import { redisLimiterFactory } from "../../src/storage/redis/redis-rate-limiter.ts";
import { LoginThrottle } from "../../src/users/login-throttle.ts";

const SETTINGS = { freeFailuresPerAccount: 2, freeFailuresPerIp: 1000, maxDelaySeconds: 8 };

describe("login throttle (in memory)", () => {
  test("free failures, then doubling waits capped at the maximum; success clears the account", async () => {
    const throttle = new LoginThrottle(SETTINGS);
    const subject = { account: `a-${randomBytes(4).toString("hex")}@example.com`, ip: "203.0.113.7" };
    const waits: number[] = [];
    for (let i = 0; i < 7; i++) {
      await throttle.failure(subject);
      waits.push(await throttle.retryAfter(subject));
    }
    assert.deepEqual(waits, [0, 0, 1, 2, 4, 8, 8]);
    await throttle.success(subject);
    assert.equal(await throttle.retryAfter(subject), 0);
  });

  test("the per-address count is not cleared by a success on some account", async () => {
    const throttle = new LoginThrottle({ ...SETTINGS, freeFailuresPerAccount: 1000, freeFailuresPerIp: 1 });
    const ip = "198.51.100.9";
    await throttle.failure({ account: "x@example.com", ip });
    await throttle.failure({ account: "y@example.com", ip });
    await throttle.success({ account: "z@example.com", ip });
    assert.equal(await throttle.retryAfter({ account: "fresh@example.com", ip }), 1);
  });
});

describe("login throttle shared through Redis", () => {
  let client: Redis;
  let available = false;
  before(async () => {
    client = createRedisClient("redis://127.0.0.1:6379", { name: "login-throttle-test" });
    available = await Promise.race([
      once(client, "ready").then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 1500)),
    ]);
  });
  after(() => client.quit().catch(() => {}));

  test("failures on one node brake the same account on another", async (t) => {
    if (!available) return t.skip("no Redis on 127.0.0.1:6379");
    const factory = redisLimiterFactory(client, { failClosed: true });
    const nodeA = new LoginThrottle(SETTINGS, { factory });
    const nodeB = new LoginThrottle(SETTINGS, { factory });
    // Fresh names: Redis outlives the test run.
    const subject = {
      account: `shared-${randomBytes(4).toString("hex")}@example.com`,
      ip: `2001:db8::${randomBytes(2).toString("hex")}`,
    };
    await nodeA.failure(subject);
    await nodeA.failure(subject);
    assert.equal(await nodeB.retryAfter(subject), 0);
    await nodeA.failure(subject);
    assert.equal(await nodeB.retryAfter(subject), 1);
    await nodeB.success(subject);
    assert.equal(await nodeA.retryAfter(subject), 0);
  });
});

describe("login throttle when its shared store fails", () => {
  test("a limiter that cannot answer refuses with 503 STORAGE_UNAVAILABLE, never lets attempts through", async () => {
    const { RateLimiterMemory } = await import("rate-limiter-flexible");
    const broken = new RateLimiterMemory({ points: 1, duration: 1 });
    const fail = () => Promise.reject(new Error("Redis is not ready"));
    broken.get = fail;
    broken.penalty = fail;
    broken.block = fail;
    broken.delete = fail;
    const throttle = new LoginThrottle(SETTINGS, { factory: () => broken });
    const subject = { account: "x@example.com", ip: "192.0.2.9" };
    for (const call of [
      () => throttle.retryAfter(subject),
      () => throttle.failure(subject),
      () => throttle.success(subject),
    ]) {
      await assert.rejects(call(), (error: unknown) => {
        assert.ok(error instanceof StorageUnavailableError);
        assert.equal(error.status, 503);
        return true;
      });
    }
  });
});
