import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { VerifiedToken } from "../src/verified-token.ts";
import { VerifiedTokenCache } from "../src/verified-token-cache.ts";

function token(sub: string, expiresAt: number): VerifiedToken {
  const exp = Math.floor(expiresAt / 1000);
  return {
    sub,
    scopes: [],
    jti: `jti-${sub}`,
    sid: null,
    expiresAt,
    claims: { iss: "i", sub, aud: "a", iat: exp - 900, exp, jti: `jti-${sub}` },
  };
}

describe("VerifiedTokenCache", () => {
  test("a hit needs the very token: the same signature under another header or payload finds nothing", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 10 });
    cache.set("header.payload.signature", { token: token("a", 10_000) }, 0);
    assert.equal(cache.get("header.payload.signature", 1)?.token.sub, "a");
    assert.equal(cache.get("header.forged.signature", 1), null, "another payload");
    assert.equal(cache.get("forged.payload.signature", 1), null, "another header");
    assert.equal(cache.get("signature", 1), null, "the signature alone");
    assert.equal(cache.get("header.payload.signature", 2)?.token.sub, "a", "a miss does not evict the real entry");
  });

  test("served strictly before expiresAt, dropped at it, never stored when already expired", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 10 });
    cache.set("h.p.d", { token: token("a", 10_000) }, 0);
    assert.ok(cache.get("h.p.d", 9_999));
    assert.equal(cache.get("h.p.d", 10_000), null);
    assert.equal(cache.size, 0, "the expired entry is gone");
    cache.set("h.p.e", { token: token("b", 10_000) }, 10_000);
    assert.equal(cache.size, 0);
  });

  test("least recently used first; a hit refreshes", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 2 });
    cache.set("h.p.a", { token: token("a", 10_000) }, 0);
    cache.set("h.p.b", { token: token("b", 10_000) }, 0);
    assert.ok(cache.get("h.p.a", 1));
    cache.set("h.p.c", { token: token("c", 10_000) }, 1);
    assert.equal(cache.get("h.p.b", 2), null);
    assert.ok(cache.get("h.p.a", 2));
    assert.ok(cache.get("h.p.c", 2));
    assert.equal(cache.size, 2);
  });

  test("matches a reference LRU over thousands of random inserts, hits and expiries", () => {
    // The reference: a Map re-inserted on every hit (insertion order is recency).
    const reference = new Map<string, number>();
    const cache = new VerifiedTokenCache({ maxEntries: 50 });
    let seed = 7;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    for (let step = 0; step < 5000; step++) {
      const now = step;
      const name = `h.p.s${Math.floor(random() * 120)}`;
      const expiresAt = now + 1 + Math.floor(random() * 400);
      if (random() < 0.5) {
        cache.set(name, { token: token(name, expiresAt) }, now);
        reference.delete(name);
        reference.set(name, expiresAt);
        while (reference.size > 50) reference.delete(reference.keys().next().value as string);
      } else {
        const hit = cache.get(name, now);
        const expected = reference.get(name);
        if (expected === undefined) {
          assert.equal(hit, null, `step ${step}: ${name} should be absent`);
        } else if (now >= expected) {
          assert.equal(hit, null, `step ${step}: ${name} has expired`);
          reference.delete(name);
        } else {
          assert.equal(hit?.token.expiresAt, expected, `step ${step}: ${name} should be cached`);
          reference.delete(name);
          reference.set(name, expected);
        }
      }
      assert.equal(cache.size, reference.size, `step ${step}: size`);
    }
  });
});
