import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { inspect } from "node:util";
import { manualClock } from "../../src/lib/clock.ts";
import { createKeyVerifier, guard } from "../src/index.ts";
import { PositiveCache } from "../src/positive-cache.ts";
import { countingFetch, startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";

describe("the positive cache, against a real Gatehouse", () => {
  let gh: TestGatehouse;
  before(async () => {
    gh = await startGatehouse();
  });
  after(() => gh.close());

  const cachedVerifier = (options: { ttlMs: number; maxEntries?: number; clock?: () => number }) => {
    const counter = countingFetch();
    const verifier = createKeyVerifier({
      baseUrl: gh.url,
      serviceKey: gh.serviceKey,
      fetch: counter.fetch,
      cacheTtlMs: options.ttlMs,
      ...(options.maxEntries ? { cacheMaxEntries: options.maxEntries } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
    });
    return { verifier, counter };
  };

  test("on: the second verification makes no request to Gatehouse", async () => {
    const { verifier, counter } = cachedVerifier({ ttlMs: 30_000 });
    const { key, id } = await gh.createKey({ scopes: ["a", "b"] });
    const first = await verifier.verify(key, { scopes: ["a"] });
    const second = await verifier.verify(key, { scopes: ["a", "b"] });
    assert.equal(counter.count, 1);
    assert.equal(first.valid && first.cached, false);
    assert.ok(second.valid);
    assert.equal(second.cached, true);
    assert.equal(second.keyId, id);
    assert.deepEqual(second.scopes, ["a", "b"]);
    assert.equal(second.ratelimit, null, "Gatehouse did not count this use, so no window to report");
    // Through the guard too: a pass, with no stale RateLimit headers.
    const passed = await guard({ headers: { "x-api-key": key } }, { verifier, scopes: ["b"] });
    assert.deepEqual(passed.ok && passed.headers, {});
    assert.equal(counter.count, 1);
  });

  test("a scope the cached answer does not cover goes to Gatehouse, which refuses and counts it", async () => {
    const { verifier, counter } = cachedVerifier({ ttlMs: 30_000 });
    const { key } = await gh.createKey({ scopes: ["a"] });
    await verifier.verify(key, { scopes: ["a"] });
    const refused = await verifier.verify(key, { scopes: ["c"] });
    assert.equal(refused.valid ? "valid" : refused.code, "INSUFFICIENT_SCOPE");
    assert.equal(counter.count, 2);
  });

  test("only valid answers are cached", async () => {
    const { verifier, counter } = cachedVerifier({ ttlMs: 30_000 });
    const { key, id } = await gh.createKey();
    await gh.revoke(id);
    for (let i = 0; i < 3; i++) assert.equal((await verifier.verify(key)).valid, false);
    assert.equal(counter.count, 3);
  });

  test("an entry lives at most cacheTtlMs (the documented revocation delay)", async () => {
    const clock = manualClock(Date.now());
    const { verifier, counter } = cachedVerifier({ ttlMs: 10_000, clock });
    const { key, id } = await gh.createKey();
    assert.equal((await verifier.verify(key)).valid, true);
    await gh.revoke(id);
    clock.advance(9_999);
    const stale = await verifier.verify(key);
    assert.equal(stale.valid && stale.cached, true, "revoked at Gatehouse, still passing here until the TTL");
    assert.equal(counter.count, 1);
    clock.advance(1);
    assert.deepEqual(await verifier.verify(key), { valid: false, code: "REVOKED", ratelimit: null });
    assert.equal(counter.count, 2);
  });

  test("an entry never outlives the key's expiresAt", async () => {
    const clock = manualClock(Date.now());
    const { verifier, counter } = cachedVerifier({ ttlMs: 3_600_000, clock });
    const { key, expiresAt } = await gh.createKey({ expiresInSeconds: 120 });
    const first = await verifier.verify(key);
    assert.equal(first.valid && first.expiresAt, expiresAt);
    clock.set(expiresAt - 1);
    assert.equal((await verifier.verify(key)).valid && counter.count, 1, "cached until just before expiry");
    clock.set(expiresAt);
    // Past expiresAt on our clock the entry is gone: Gatehouse is asked again (it still runs on
    // real time, so it answers valid; what matters is that the cache did not answer).
    const after = await verifier.verify(key);
    assert.equal(counter.count, 2);
    assert.equal(after.valid && after.cached, false);
  });

  test("bounded: the least recently used key is evicted at cacheMaxEntries", async () => {
    const { verifier, counter } = cachedVerifier({ ttlMs: 30_000, maxEntries: 2 });
    const [k1, k2, k3] = await Promise.all([gh.createKey(), gh.createKey(), gh.createKey()]);
    if (!k1 || !k2 || !k3) throw new Error("keys not created");
    await verifier.verify(k1.key);
    await verifier.verify(k2.key);
    await verifier.verify(k1.key); // hit: k1 becomes the most recently used
    assert.equal(counter.count, 2);
    await verifier.verify(k3.key); // evicts k2
    await verifier.verify(k1.key);
    assert.equal(counter.count, 3, "k1 still cached");
    await verifier.verify(k2.key);
    assert.equal(counter.count, 4, "k2 was evicted");
  });

  test("off by default: every verification asks Gatehouse", async () => {
    const counter = countingFetch();
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey, fetch: counter.fetch });
    const { key } = await gh.createKey();
    for (let i = 0; i < 3; i++) assert.equal((await verifier.verify(key)).valid, true);
    assert.equal(counter.count, 3);
  });
});

describe("PositiveCache", () => {
  const key = (expiresAt: number | null) => ({ keyId: "key_1", ownerId: null, scopes: ["a"], expiresAt });
  const secret = `gate_${"A".repeat(49)}`;

  test("holds a SHA-256 of the key, never the key", () => {
    const cache = new PositiveCache({ ttlMs: 1000, maxEntries: 10, clock: () => 0 });
    cache.set(secret, undefined, key(null));
    assert.equal(cache.size, 1);
    const dump = inspect(cache, { depth: 10, showHidden: true });
    assert.ok(!dump.includes(secret.slice(5, 30)), dump);
    assert.deepEqual(cache.get(secret, undefined), key(null));
  });

  test("an answer for one client address is not one for another (keys may be bound to addresses)", () => {
    const cache = new PositiveCache({ ttlMs: 1000, maxEntries: 10, clock: () => 0 });
    cache.set(secret, "192.0.2.1", key(null));
    assert.deepEqual(cache.get(secret, "192.0.2.1"), key(null));
    assert.equal(cache.get(secret, "198.51.100.1"), null);
    assert.equal(cache.get(secret, undefined), null);
    cache.delete(secret, "192.0.2.1");
    assert.equal(cache.get(secret, "192.0.2.1"), null);
  });

  test("a key already expired is not cached at all", () => {
    const cache = new PositiveCache({ ttlMs: 1000, maxEntries: 10, clock: () => 5000 });
    cache.set(secret, undefined, key(5000));
    assert.equal(cache.size, 0);
    assert.equal(cache.get(secret, undefined), null);
  });
});
