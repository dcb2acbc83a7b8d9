import assert from "node:assert/strict";
import { test } from "node:test";
import { pooledRandomBytes } from "../../src/lib/random-pool.ts";

test("pooled random bytes: the size asked, never handed out twice, across refills", () => {
  const seen = new Set<string>();
  // 32 bytes at a time, 4 KiB pools: 500 draws cross several refills.
  for (let i = 0; i < 500; i++) {
    const bytes = pooledRandomBytes(32);
    assert.equal(bytes.length, 32);
    const hex = bytes.toString("hex");
    assert.ok(!seen.has(hex), "a draw repeated");
    seen.add(hex);
  }
  // Odd sizes and one larger than the pool.
  for (const size of [1, 11, 4095, 4096, 10_000]) assert.equal(pooledRandomBytes(size).length, size);
});

test("a draw is the caller's own copy: changing it changes no later draw", () => {
  const first = pooledRandomBytes(16);
  first.fill(0);
  const next = pooledRandomBytes(16);
  assert.notDeepEqual(next, Buffer.alloc(16));
  // Bytes are spread: a stuck generator or a zeroed pool would fail this.
  const big = pooledRandomBytes(4096);
  const distinct = new Set(big).size;
  assert.ok(distinct > 200, `only ${distinct} distinct byte values in 4 KiB`);
});
