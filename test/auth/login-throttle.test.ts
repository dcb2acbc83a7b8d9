import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { after, before, describe, type TestContext, test } from "node:test";
import type { Redis } from "ioredis";
import { StorageUnavailableError } from "../../src/errors/gatehouse-error.ts";
import { createRedisClient } from "../../src/storage/redis/redis-client.ts";
import { redisLimiterFactory } from "../../src/storage/redis/redis-rate-limiter.ts";
import { LoginThrottle } from "../../src/users/login-throttle.ts";

const SETTINGS = { freeFailuresPerAccount: 2, freeFailuresPerIp: 1000, maxDelaySeconds: 8, knownAddressDays: 24 };
/** Every node of a deployment derives the same pair key from the master key. */
const PAIR_KEY = randomBytes(32);
const OPTIONS = { pairKey: () => PAIR_KEY };

const freshAccount = (label: string) => `${label}-${randomBytes(4).toString("hex")}@example.com`;

describe("login throttle (in memory)", () => {
  test("free failures, then doubling waits capped at the maximum; success clears the account", async () => {
    const throttle = new LoginThrottle(SETTINGS, OPTIONS);
    const subject = { account: `a-${randomBytes(4).toString("hex")}@example.com`, ip: "203.0.113.7" };
    // An admitted attempt counts as a failure from the start: the third starts a 1 s brake.
    assert.deepEqual(
      [await throttle.admit(subject), await throttle.admit(subject), await throttle.admit(subject)],
      [0, 0, 0],
    );
    const waits = [await throttle.admit(subject)];
    for (let i = 0; i < 5; i++) {
      await throttle.failure(subject);
      waits.push(await throttle.admit(subject));
    }
    assert.deepEqual(waits, [1, 2, 4, 8, 8, 8]);
    await throttle.success(subject);
    assert.equal(await throttle.admit(subject), 0);
  });

  test("attempts sent together are counted as they start: past the free failures, one gets through", async () => {
    const throttle = new LoginThrottle(SETTINGS, OPTIONS);
    const subject = { account: freshAccount("burst"), ip: "203.0.113.8" };
    // Each attempt's look at the brakes comes before any of them is counted.
    const waits = await Promise.all(Array.from({ length: 20 }, () => throttle.admit(subject)));
    const admitted = waits.filter((wait) => wait === 0).length;
    assert.ok(admitted >= 1 && admitted <= SETTINGS.freeFailuresPerAccount + 1, `admitted ${admitted} of 20`);
    // Checked one at a time, the same 20 admit the free failures and the one that starts the brake.
    const serial = new LoginThrottle(SETTINGS, OPTIONS);
    const one = { account: freshAccount("serial"), ip: "203.0.113.9" };
    const serialWaits: number[] = [];
    for (let i = 0; i < 20; i++) serialWaits.push(await serial.admit(one));
    assert.equal(serialWaits.filter((wait) => wait === 0).length, SETTINGS.freeFailuresPerAccount + 1);
  });

  test("release takes an unchecked attempt back; a right password never counts against its address", async () => {
    const throttle = new LoginThrottle({ ...SETTINGS, freeFailuresPerIp: 2 }, OPTIONS);
    const ip = "198.51.100.77";
    const account = freshAccount("released");
    // Never checked (a full hasher, say): ten of them leave the account's budget whole.
    for (let i = 0; i < 10; i++) {
      assert.equal(await throttle.admit({ account, ip }), 0, `attempt ${i}`);
      await throttle.release({ account, ip });
    }
    // Right passwords from the address: nothing is charged to it.
    for (let i = 0; i < 10; i++) {
      const subject = { account: freshAccount(`ok${i}`), ip };
      assert.equal(await throttle.admit(subject), 0, `sign-in ${i}`);
      await throttle.success(subject);
    }
    // Wrong ones are: two free, the third starts the address's brake.
    const guesses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const subject = { account: freshAccount(`guess${i}`), ip };
      const wait = await throttle.admit(subject);
      guesses.push(wait);
      if (wait === 0) await throttle.rejected(subject);
    }
    assert.deepEqual(guesses, [0, 0, 0, 2]);
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) waits.push(await throttle.admit({ account, ip: "198.51.100.78" }));
    assert.deepEqual(waits, [0, 0, 0, 1], "the released account's own budget is whole");
  });

  test("the per-address count is not cleared by a success on some account", async () => {
    const throttle = new LoginThrottle({ ...SETTINGS, freeFailuresPerAccount: 1000, freeFailuresPerIp: 1 }, OPTIONS);
    const ip = "198.51.100.9";
    await throttle.failure({ account: "x@example.com", ip });
    const owner = { account: "z@example.com", ip };
    assert.equal(await throttle.admit(owner), 0);
    await throttle.success(owner);
    await throttle.failure({ account: "y@example.com", ip });
    // x's and y's failures stay counted: blocked for 1 s by y's; asking again counts too, so the wait is now 2 s.
    assert.equal(await throttle.admit({ account: "fresh@example.com", ip }), 2);
  });

  test("an account blocked by failures elsewhere admits an address it was signed in from, and only that", async () => {
    const throttle = new LoginThrottle({ ...SETTINGS, maxDelaySeconds: 900 }, OPTIONS);
    const account = freshAccount("owner");
    await throttle.success({ account, ip: "192.0.2.10" });
    // Let due timers run: a memory longer than Node's timers can hold once expired here.
    await new Promise((resolve) => setTimeout(resolve, 5));
    // Failures from many addresses: the account's count grows past its free failures.
    for (let i = 0; i < 6; i++) await throttle.failure({ account, ip: `198.51.100.${i}` });
    assert.equal(await throttle.admit({ account, ip: "203.0.113.99" }), 8);
    // Known for this account only.
    await throttle.success({ account: freshAccount("other"), ip: "203.0.113.99" });
    assert.equal(await throttle.admit({ account, ip: "203.0.113.99" }), 8);
    assert.equal(await throttle.admit({ account, ip: "192.0.2.10" }), 0);
  });

  test("at a known address the pair's own brake still applies, blocked account or not", async () => {
    const throttle = new LoginThrottle(SETTINGS, OPTIONS);
    const subject = { account: freshAccount("pair"), ip: "192.0.2.20" };
    await throttle.success(subject);
    for (let i = 0; i < 4; i++) await throttle.failure({ account: subject.account, ip: `198.51.100.${i}` });
    const waits: number[] = [];
    for (let i = 0; i < 4; i++) waits.push(await throttle.admit(subject));
    // The pair counts only its own attempts: free twice, the third starts its 1 s brake.
    assert.deepEqual(waits, [0, 0, 0, 1]);
  });

  test("a memory of known addresses longer than Node's timers can hold is refused", () => {
    assert.throws(() => new LoginThrottle({ ...SETTINGS, knownAddressDays: 25 }, OPTIONS), TypeError);
  });

  test("a refused attempt counts against its address: polling during a wait spends its budget", async () => {
    const throttle = new LoginThrottle({ ...SETTINGS, freeFailuresPerIp: 3, maxDelaySeconds: 900 }, OPTIONS);
    const account = freshAccount("victim");
    for (let i = 0; i < 8; i++) await throttle.failure({ account, ip: `198.51.100.${i}` });
    const attacker = "203.0.113.66";
    const waits: number[] = [];
    for (let i = 0; i < 10; i++) waits.push(await throttle.admit({ account, ip: attacker }));
    // The account's 32 s wait, until the address's own wait (1 s from the 4th refusal,
    // doubling with each one after) outgrows it.
    assert.deepEqual(waits, [32, 32, 32, 32, 32, 32, 32, 32, 32, 64]);
    // The address is now braked for every account, not only the blocked one.
    assert.equal(await throttle.admit({ account: freshAccount("fresh"), ip: attacker }), 64 * 2);
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
    const nodeA = new LoginThrottle(SETTINGS, { ...OPTIONS, factory });
    const nodeB = new LoginThrottle(SETTINGS, { ...OPTIONS, factory });
    // Fresh names: Redis outlives the test run.
    const subject = {
      account: `shared-${randomBytes(4).toString("hex")}@example.com`,
      ip: `2001:db8::${randomBytes(2).toString("hex")}`,
    };
    assert.equal(await nodeA.admit(subject), 0);
    assert.equal(await nodeA.admit(subject), 0);
    // The third attempt, on the other node, is admitted and starts the brake both see.
    assert.equal(await nodeB.admit(subject), 0);
    assert.equal(await nodeA.admit(subject), 1);
    await nodeB.success(subject);
    assert.equal(await nodeA.admit(subject), 0);
  });

  test("attempts sent together to two nodes: past the free failures, at most one gets through", async (t) => {
    if (!available) return t.skip("no Redis on 127.0.0.1:6379");
    const factory = redisLimiterFactory(client, { failClosed: true });
    const nodes = [
      new LoginThrottle(SETTINGS, { ...OPTIONS, factory }),
      new LoginThrottle(SETTINGS, { ...OPTIONS, factory }),
    ];
    const subject = { account: freshAccount("burst"), ip: `2001:db8:4::${randomBytes(2).toString("hex")}` };
    const waits = await Promise.all(
      Array.from({ length: 30 }, (_, i) => (nodes[i % 2] as LoginThrottle).admit(subject)),
    );
    const admitted = waits.filter((wait) => wait === 0).length;
    assert.ok(admitted >= 1 && admitted <= SETTINGS.freeFailuresPerAccount + 1, `admitted ${admitted} of 30`);
  });

  /**
   * A second connection to the real Redis whose MULTI blocks (rate-limiter-flexible's reads
   * and brakes) are held back while `hold` says so for a command queued in them, until the
   * test opens the gate: the moments between one node's round trips, made as long as the
   * test needs. `held` resolves when one is first held.
   */
  async function gatedClient(t: TestContext, hold: (command: string, key: string) => boolean) {
    const gated = createRedisClient("redis://127.0.0.1:6379", { name: "login-throttle-gated" });
    t.after(() => gated.quit().catch(() => {}));
    await once(gated, "ready");
    const { promise: gate, resolve: open } = Promise.withResolvers<void>();
    const { promise: held, resolve: markHeld } = Promise.withResolvers<void>();
    const multi = gated.multi.bind(gated) as () => ReturnType<Redis["multi"]>;
    gated.multi = (() => {
      const pipeline = multi();
      let holding = false;
      for (const command of ["get", "set"] as const) {
        const original = (pipeline[command] as (...args: unknown[]) => unknown).bind(pipeline);
        (pipeline as unknown as Record<string, (...args: unknown[]) => unknown>)[command] = (...args: unknown[]) => {
          if (hold(command, String(args[0]))) holding = true;
          return original(...args);
        };
      }
      const exec = pipeline.exec.bind(pipeline);
      pipeline.exec = (async (...args: Parameters<typeof exec>) => {
        if (holding) {
          markHeld();
          await gate;
        }
        return exec(...args);
      }) as typeof pipeline.exec;
      return pipeline;
    }) as typeof gated.multi;
    return { client: gated, open, held };
  }

  test("an attempt on another node between one's count and its brake is refused (count and brake are one step)", async (t) => {
    if (!available) return t.skip("no Redis on 127.0.0.1:6379");
    // Node A's brake write (a SET … EX in a MULTI, on the old path) is held back.
    const a = await gatedClient(t, (command) => command === "set");
    const nodeA = new LoginThrottle(SETTINGS, {
      ...OPTIONS,
      factory: redisLimiterFactory(a.client, { failClosed: true }),
    });
    const nodeB = new LoginThrottle(SETTINGS, {
      ...OPTIONS,
      factory: redisLimiterFactory(client, { failClosed: true }),
    });
    const subject = { account: freshAccount("between"), ip: `2001:db8:5::${randomBytes(2).toString("hex")}` };
    // The free failures, used up.
    for (let i = 0; i < SETTINGS.freeFailuresPerAccount; i++) assert.equal(await nodeB.admit(subject), 0);
    // A's attempt is the one past them: counted, its brake on the way (or already set).
    const onA = nodeA.admit(subject);
    await Promise.race([onA, a.held]);
    const onB = await nodeB.admit(subject);
    a.open();
    const waits = [await onA, onB];
    assert.equal(waits.filter((wait) => wait === 0).length, 1, `waits ${waits.join(", ")}: one admitted, not both`);
  });

  test("an attempt whose reads of brake and count another node's count-and-brake falls between is refused", async (t) => {
    if (!available) return t.skip("no Redis on 127.0.0.1:6379");
    // Node B's reads of the failure counts are held back: it has seen no brake, and will
    // see the count another attempt made meanwhile (reviewer's case).
    const b = await gatedClient(t, (command, key) => command === "get" && key.includes("login-failures"));
    const nodeA = new LoginThrottle(SETTINGS, {
      ...OPTIONS,
      factory: redisLimiterFactory(client, { failClosed: true }),
    });
    const nodeB = new LoginThrottle(SETTINGS, {
      ...OPTIONS,
      factory: redisLimiterFactory(b.client, { failClosed: true }),
    });
    const subject = { account: freshAccount("reads"), ip: `2001:db8:6::${randomBytes(2).toString("hex")}` };
    for (let i = 0; i < SETTINGS.freeFailuresPerAccount; i++) assert.equal(await nodeA.admit(subject), 0);
    const onB = nodeB.admit(subject);
    await b.held;
    const onA = await nodeA.admit(subject);
    b.open();
    const waits = [onA, await onB];
    assert.equal(waits.filter((wait) => wait === 0).length, 1, `waits ${waits.join(", ")}: one admitted, not both`);
  });

  test("an address known on one node is known on the other; the store keeps only a digest of it", async (t) => {
    if (!available) return t.skip("no Redis on 127.0.0.1:6379");
    const factory = redisLimiterFactory(client, { failClosed: true });
    const nodeA = new LoginThrottle(SETTINGS, { ...OPTIONS, factory });
    const nodeB = new LoginThrottle(SETTINGS, { ...OPTIONS, factory });
    const account = freshAccount("known");
    const home = `2001:db8:1::${randomBytes(2).toString("hex")}`;
    await nodeA.success({ account, ip: home });
    for (let i = 0; i < 3; i++) await nodeA.failure({ account, ip: `2001:db8:2::${randomBytes(2).toString("hex")}` });
    assert.equal(await nodeB.admit({ account, ip: `2001:db8:3::${randomBytes(2).toString("hex")}` }), 1);
    assert.equal(await nodeB.admit({ account, ip: home }), 0);
    const remembered = await client.keys("login-known:*");
    assert.ok(remembered.length > 0);
    assert.ok(remembered.every((key) => !key.includes(home) && !key.includes(account)));
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
    broken.set = fail;
    const throttle = new LoginThrottle(SETTINGS, { ...OPTIONS, factory: () => broken });
    const subject = { account: "x@example.com", ip: "192.0.2.9" };
    for (const call of [
      () => throttle.admit(subject),
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
