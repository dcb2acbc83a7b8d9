import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { VerifiedToken } from "../src/verified-token.ts";
import { tokenDigest, VerifiedTokenCache } from "../src/verified-token-cache.ts";

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
  test("keyed by SHA-256: the token itself is never a key", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 10 });
    const digest = tokenDigest("header.payload.signature");
    assert.match(digest, /^[A-Za-z0-9_-]{43}$/);
    cache.set(digest, { token: token("a", 10_000), revocation: null }, 0);
    assert.equal(cache.get(digest, 1)?.token.sub, "a");
    assert.equal(cache.get("header.payload.signature", 1), null);
  });

  test("served strictly before expiresAt, dropped at it, never stored when already expired", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 10 });
    cache.set("d", { token: token("a", 10_000), revocation: null }, 0);
    assert.ok(cache.get("d", 9_999));
    assert.equal(cache.get("d", 10_000), null);
    assert.equal(cache.size, 0, "the expired entry is gone");
    cache.set("e", { token: token("b", 10_000), revocation: null }, 10_000);
    assert.equal(cache.size, 0);
  });

  test("least recently used first; a hit refreshes", () => {
    const cache = new VerifiedTokenCache({ maxEntries: 2 });
    cache.set("a", { token: token("a", 10_000), revocation: null }, 0);
    cache.set("b", { token: token("b", 10_000), revocation: null }, 0);
    assert.ok(cache.get("a", 1));
    cache.set("c", { token: token("c", 10_000), revocation: null }, 1);
    assert.equal(cache.get("b", 2), null);
    assert.ok(cache.get("a", 2));
    assert.ok(cache.get("c", 2));
    assert.equal(cache.size, 2);
  });
});
