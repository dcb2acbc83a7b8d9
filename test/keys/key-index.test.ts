import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { KeyIndex } from "../../src/keys/key-index.ts";
import { PACKED_ID_BYTES, packId, unpackId } from "../../src/keys/packed-id.ts";
import { newId } from "../../src/lib/ids.ts";
import type { ApiKeyRecord } from "../../src/storage/types.ts";

const NOW = Date.UTC(2026, 10, 28, 12, 0, 30);

function key(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  return {
    id: newId("key", NOW),
    digest: randomBytes(32),
    name: "k",
    hint: "gate_xxxx…yyyy",
    scopes: ["payments:read"],
    permissions: [],
    ownerId: null,
    metadata: null,
    rateLimit: null,
    createdAt: NOW,
    expiresAt: NOW + 60_000,
    revokedAt: null,
    revokedReason: null,
    replacedBy: null,
    rotatedFrom: null,
    lastUsedAt: null,
    allowedAddresses: null,
    ...overrides,
  };
}

describe("KeyIndex", () => {
  test("finds every key it holds, and none it does not, across growth and removals", () => {
    const index = new KeyIndex();
    const keys = Array.from({ length: 5000 }, () => key());
    for (const k of keys) index.upsert(k);
    assert.equal(index.size, 5000);
    // Remove every third key: backward-shift deletion must keep every other probe chain.
    const removed = keys.filter((_, i) => i % 3 === 0);
    for (const k of removed) assert.equal(index.remove(k.digest), true);
    assert.equal(index.remove(removed[0]?.digest as Buffer), false);
    assert.equal(index.size, 5000 - removed.length);
    for (const [i, k] of keys.entries()) {
      const record = index.find(k.digest);
      if (i % 3 === 0) assert.equal(record, -1, `removed key ${i} still found`);
      else assert.equal(index.id(record), k.id, `key ${i}`);
    }
    // Freed records are reused, and the table still finds everything.
    const more = Array.from({ length: 3000 }, () => key());
    for (const k of more) index.upsert(k);
    for (const k of more) assert.equal(index.id(index.find(k.digest)), k.id);
    assert.equal(index.find(randomBytes(32)), -1);
  });

  test("copyPackedId gives the bytes of the record's id, and false for an id not held packed", () => {
    const index = new KeyIndex();
    const standard = key();
    const odd = key({ id: "key_bulk00001" });
    index.upsert(standard);
    index.upsert(odd);
    const out = Buffer.alloc(PACKED_ID_BYTES);
    assert.equal(index.copyPackedId(index.find(standard.digest), out), true);
    assert.equal(unpackId(out, 0), standard.id);
    out.fill(7);
    assert.equal(index.copyPackedId(index.find(odd.digest), out), false);
    assert.ok(
      out.every((byte) => byte === 7),
      "nothing written for an odd id",
    );
  });

  test("a digest differing anywhere in its first 128 bits is not a match", () => {
    const index = new KeyIndex();
    const k = key();
    index.upsert(k);
    for (const at of [0, 3, 4, 7, 8, 11, 12, 15]) {
      const near = Buffer.from(k.digest);
      near[at] = (near[at] as number) ^ 0x80;
      assert.equal(index.find(near), -1, `byte ${at}`);
    }
    assert.notEqual(index.find(Buffer.from(k.digest)), -1);
  });

  test("every field verification answers with round-trips; updates happen in place", () => {
    const index = new KeyIndex();
    const k = key({
      ownerId: "acct_1",
      scopes: ["a:read", "b:write"],
      permissions: ["keys:verify"],
      rateLimit: { limit: 5, windowSeconds: 10 },
      expiresAt: null,
      revokedAt: NOW + 5000,
    });
    index.upsert(k);
    const record = index.find(k.digest);
    assert.equal(index.id(record), k.id);
    assert.equal(index.ownerId(record), "acct_1");
    assert.deepEqual(index.scopes(record), ["a:read", "b:write"]);
    assert.deepEqual(index.permissions(record), ["keys:verify"]);
    assert.deepEqual(index.rateLimit(record), { limit: 5, windowSeconds: 10 });
    assert.equal(index.expiresAt(record), null);
    assert.equal(index.revokedAt(record), NOW + 5000);
    index.upsert({ ...k, ownerId: null, scopes: [], rateLimit: null, expiresAt: NOW + 1, revokedAt: null });
    assert.equal(index.find(k.digest), record);
    assert.equal(index.ownerId(record), null);
    assert.deepEqual(index.scopes(record), []);
    assert.equal(index.rateLimit(record), null);
    assert.equal(index.expiresAt(record), NOW + 1);
    assert.equal(index.revokedAt(record), null);
  });

  test("expiry is kept to the millisecond in 6 bytes; none is null; past 2106 is left to storage", () => {
    const index = new KeyIndex();
    const exact = key({ expiresAt: NOW + 10 * 365 * 86_400_000 + 999 });
    const never = key({ expiresAt: null });
    index.upsert(exact);
    index.upsert(never);
    const record = index.find(exact.digest);
    assert.equal(index.expiresAt(record), exact.expiresAt);
    assert.equal(index.status(record, (exact.expiresAt as number) - 1), "active");
    assert.equal(index.status(record, exact.expiresAt as number), "expired");
    assert.equal(index.expiresAt(index.find(never.digest)), null);
    assert.equal(index.status(index.find(never.digest), Number.MAX_SAFE_INTEGER), "active");
    const far = key({ expiresAt: Date.UTC(2107, 0, 1) });
    index.upsert(far);
    assert.equal(index.find(far.digest), -1);
    // Also when a key already held is moved past it.
    index.upsert({ ...exact, expiresAt: far.expiresAt });
    assert.equal(index.find(exact.digest), -1);
    assert.equal(index.size, 1);
  });

  test("owners and profiles past 65,535 distinct values widen their columns and keep every number", () => {
    const index = new KeyIndex();
    const keys = Array.from({ length: 70_000 }, (_, i) => key({ ownerId: `acct_${i}`, scopes: [`s${i}:read`] }));
    for (const k of keys) index.upsert(k);
    for (const [i, k] of keys.entries()) {
      const record = index.find(k.digest);
      assert.equal(index.ownerId(record), `acct_${i}`);
      assert.deepEqual(index.scopes(record), [`s${i}:read`]);
    }
  });

  test("ids of any other shape are kept whole", () => {
    const index = new KeyIndex();
    const long = key({ id: `key_${"x".repeat(60)}` });
    const unicode = key({ id: "key_ünïcode" });
    index.upsert(long);
    index.upsert(unicode);
    assert.equal(index.id(index.find(long.digest)), long.id);
    assert.equal(index.id(index.find(unicode.digest)), unicode.id);
  });

  test("status follows keyStatus: a grace period ends on time, expiry is exclusive", () => {
    const index = new KeyIndex();
    const grace = key({ revokedAt: NOW + 1000, expiresAt: NOW + 5000 });
    index.upsert(grace);
    const record = index.find(grace.digest);
    assert.equal(index.status(record, NOW + 999), "active");
    assert.equal(index.status(record, NOW + 1000), "revoked");
    const expiring = key({ expiresAt: NOW + 10 });
    index.upsert(expiring);
    assert.equal(index.status(index.find(expiring.digest), NOW + 9), "active");
    assert.equal(index.status(index.find(expiring.digest), NOW + 10), "expired");
    assert.equal(index.removeDead(NOW + 500), 1);
    assert.equal(index.find(expiring.digest), -1);
    assert.notEqual(index.find(grace.digest), -1);
    assert.equal(index.removeDead(NOW + 1000), 1);
    assert.equal(index.find(grace.digest), -1);
    assert.equal(index.size, 0);
  });

  test("fixed windows aligned to the clock: the limit holds, then a new window starts over", () => {
    const index = new KeyIndex();
    const k = key();
    index.upsert(k);
    const record = index.find(k.digest);
    const policy = { limit: 3, windowSeconds: 60 };
    const windowStart = Math.floor(NOW / 60_000) * 60_000;
    const seen = [0, 1, 2, 3].map(() => index.take(record, policy, NOW));
    assert.deepEqual(
      seen.map((o) => [o.allowed, o.remaining, o.reset]),
      [
        [true, 2, windowStart + 60_000],
        [true, 1, windowStart + 60_000],
        [true, 0, windowStart + 60_000],
        [false, 0, windowStart + 60_000],
      ],
    );
    const next = index.take(record, policy, windowStart + 60_000);
    assert.deepEqual([next.allowed, next.remaining, next.reset], [true, 2, windowStart + 120_000]);
    // An update in place keeps the count of the running window.
    index.upsert({ ...k, ownerId: "someone else" });
    assert.equal(index.take(record, policy, windowStart + 60_001).remaining, 1);
  });
  // Regression: the profile's name wrote an allowlist as its entries joined, so an empty
  // list (no address may use the key, as storage reads it; only SQL can store one) and
  // none at all (any address) had one name, and the second key took the first one's.
  test("a key with an empty allowlist does not share the profile of one without any", () => {
    const index = new KeyIndex();
    const anywhere = key();
    const nowhere = key({ allowedAddresses: [] });
    index.upsert(anywhere);
    index.upsert(nowhere);
    assert.equal(index.allowlist(index.find(anywhere.digest)), null);
    const list = index.allowlist(index.find(nowhere.digest));
    assert.notEqual(list, null);
    assert.equal(list?.allows("192.0.2.1"), false);
  });
});

describe("packed ids", () => {
  test("every id Gatehouse makes round-trips through 18 bytes", () => {
    const out = Buffer.alloc(PACKED_ID_BYTES * 2);
    const ids = [
      ...Array.from({ length: 2000 }, (_, i) => newId("key", NOW + i * 7919)),
      "key_000000000000000000000000000",
      "key_ffffffffffffzzzzzzzzzzzzzzz",
      "key_0123456789abABCDEFGHIJKLMNO",
    ];
    for (const id of ids) {
      assert.equal(packId(id, out, PACKED_ID_BYTES), true, id);
      assert.equal(unpackId(out, PACKED_ID_BYTES), id);
    }
    for (const odd of ["key_bulk00001", "usr_0123456789abABCDEFGHIJKLMNO", "key_0123456789AbABCDEFGHIJKLMNO", ""]) {
      assert.equal(packId(odd, out, 0), false, odd);
    }
  });
});
