import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { manualClock } from "../../src/lib/clock.ts";
import { createTokenVerifier, VerifierError } from "../src/index.ts";
import { deadUrl } from "./support/gatehouse.ts";
import { pathCountingFetch, startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

const JWKS_PATH = "/.well-known/jwks.json";

describe("createTokenVerifier against a real Gatehouse", () => {
  let gh: TokenGatehouse;
  before(async () => {
    gh = await startTokenGatehouse();
  });
  after(() => gh.close());

  test("a token from POST /auth/login verifies: sub, scopes, claims, then answered from the cache", async () => {
    const { userId, accessToken } = await gh.signIn({ scopes: ["payments:read", "profile"] });
    const verifier = gh.verifier();
    const first = await verifier.verify(accessToken, { scopes: ["payments:read"] });
    assert.equal(first.valid, true);
    if (!first.valid) return;
    assert.equal(first.cached, false);
    assert.equal(first.token.sub, userId);
    assert.deepEqual(first.token.scopes, ["payments:read", "profile"]);
    const claims = decodeJwt(accessToken);
    assert.equal(first.token.jti, claims.jti);
    assert.equal(first.token.sid, claims.sid);
    assert.equal(first.token.expiresAt, Number(claims.exp) * 1000);
    assert.equal(first.token.claims.iss, gh.issuer);
    assert.equal(first.token.claims.client_id, "gatehouse");
    assert.ok(Object.isFrozen(first.token) && Object.isFrozen(first.token.scopes), "shared between requests, frozen");
    const second = await verifier.verify(accessToken);
    assert.equal(second.valid && second.cached, true);
  });

  test("wrong audience or issuer: refused", async () => {
    const { accessToken } = await gh.signIn();
    for (const [options, reason] of [
      [{ audience: "https://other.example" }, "WRONG_AUDIENCE"],
      [{ issuer: "https://evil.example" }, "WRONG_ISSUER"],
      // The same Gatehouse under another spelling of its URL: the usual misconfiguration.
      [{ issuer: `${gh.issuer}/` }, "WRONG_ISSUER"],
    ] as const) {
      const result = await gh.verifier(options).verify(accessToken);
      assert.deepEqual(result, { valid: false, code: "INVALID_TOKEN", reason }, JSON.stringify(options));
    }
    // An audience list holding ours passes.
    const listed = await gh.verifier({ audience: ["https://other.example", gh.audience] }).verify(accessToken);
    assert.equal(listed.valid, true);
  });

  test("expired: refused after exp (plus the clock tolerance), on the verifier's own clock", async () => {
    const { accessToken } = await gh.signIn();
    const exp = Number(decodeJwt(accessToken).exp) * 1000;
    const clock = manualClock(exp + 5_001);
    const result = await gh.verifier({ clock }).verify(accessToken);
    assert.deepEqual(result, { valid: false, code: "INVALID_TOKEN", reason: "EXPIRED" });
    clock.set(exp + 4_000);
    assert.equal((await gh.verifier({ clock }).verify(accessToken)).valid, true, "within the 5 s tolerance");
    const strict = await gh.verifier({ clock, clockToleranceSeconds: 0 }).verify(accessToken);
    assert.deepEqual(strict, { valid: false, code: "INVALID_TOKEN", reason: "EXPIRED" });
  });

  test("scopes: a valid token lacking one is INSUFFICIENT_SCOPE, naming what is missing", async () => {
    const { accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    const result = await gh.verifier().verify(accessToken, { scopes: ["payments:read", "payments:write"] });
    assert.equal(result.valid, false);
    assert.ok(!result.valid && result.code === "INSUFFICIENT_SCOPE");
    assert.deepEqual(result.missingScopes, ["payments:write"]);
  });

  test("caller mistakes are TypeErrors at construction, never per token", async () => {
    const base = { issuer: gh.issuer, audience: gh.audience, jwksUri: gh.jwksUri };
    const bad: Array<[string, Record<string, unknown>]> = [
      ["HS256 is never accepted from a JWKS", { algorithms: ["HS256"] }],
      ["alg none", { algorithms: ["none"] }],
      ["an empty list", { algorithms: [] }],
      ["a large tolerance", { clockToleranceSeconds: 3600 }],
      ["no issuer", { issuer: "" }],
      ["no audience", { audience: [] }],
      ["JWKS over http to a remote host", { jwksUri: "http://auth.example.com/.well-known/jwks.json" }],
      ["a JWKS URL with a query", { jwksUri: `${gh.jwksUri}?x=1` }],
      ["a negative cache", { cache: { maxEntries: -1 } }],
    ];
    for (const [label, change] of bad) {
      assert.throws(() => createTokenVerifier({ ...base, ...change }), TypeError, label);
    }
    const verifier = createTokenVerifier(base);
    await assert.rejects(verifier.verify("a.b.c", { scopes: ["has space"] }), TypeError);
    const defaulted = createTokenVerifier({ issuer: "https://auth.example.com/", audience: "x" });
    assert.equal(typeof defaulted.verify, "function", "jwksUri defaults to <issuer>/.well-known/jwks.json");
  });
});

describe("the cache of verified tokens", () => {
  let gh: TokenGatehouse;
  before(async () => {
    gh = await startTokenGatehouse();
  });
  after(() => gh.close());

  test("a hit makes no JWKS fetch and no signature check; scopes are still checked", async () => {
    const counter = pathCountingFetch();
    const verifier = gh.verifier({ fetch: counter.fetch });
    const { accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.deepEqual(verifier.stats, { cacheHits: 0, signatureChecks: 1, jwksFetches: 1, revocationChecks: 0 });
    for (let i = 0; i < 50; i++) {
      const result = await verifier.verify(accessToken, { scopes: ["payments:read"] });
      assert.ok(result.valid && result.cached);
    }
    const lacking = await verifier.verify(accessToken, { scopes: ["payments:write"] });
    assert.ok(!lacking.valid && lacking.code === "INSUFFICIENT_SCOPE");
    assert.deepEqual(verifier.stats, { cacheHits: 51, signatureChecks: 1, jwksFetches: 1, revocationChecks: 0 });
    assert.equal(counter.count(JWKS_PATH), 1);
  });

  test("never served at or after exp: the entry is dropped and the token checked afresh", async () => {
    const { accessToken } = await gh.signIn();
    const exp = Number(decodeJwt(accessToken).exp) * 1000;
    const clock = manualClock(Date.now());
    const verifier = gh.verifier({ clock });
    assert.equal((await verifier.verify(accessToken)).valid, true);
    clock.set(exp - 1);
    const last = await verifier.verify(accessToken);
    assert.ok(last.valid && last.cached, "a hit up to the last millisecond");
    clock.set(exp);
    const atExp = await verifier.verify(accessToken);
    // Not from the cache: only jose's tolerance (5 s) can still accept it.
    assert.ok(atExp.valid && !atExp.cached);
    assert.equal(verifier.stats.signatureChecks, 2);
    clock.set(exp + 5_001);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "EXPIRED" });
  });

  test("bounded: the least recently used token goes first", async () => {
    const verifier = gh.verifier({ cache: { maxEntries: 2 } });
    const [a, b, c] = await Promise.all([gh.signIn(), gh.signIn(), gh.signIn()]);
    assert.ok(a && b && c);
    for (const token of [a, b, a, c]) await verifier.verify(token.accessToken);
    // b was least recently used when c arrived.
    assert.ok((await verifier.verify(a.accessToken)).valid);
    assert.ok((await verifier.verify(c.accessToken)).valid);
    assert.equal(verifier.stats.signatureChecks, 3);
    const again = await verifier.verify(b.accessToken);
    assert.ok(again.valid && !again.cached);
    assert.equal(verifier.stats.signatureChecks, 4);
  });

  test("maxEntries 0 turns the cache off", async () => {
    const verifier = gh.verifier({ cache: { maxEntries: 0 } });
    const { accessToken } = await gh.signIn();
    for (let i = 0; i < 3; i++) assert.ok((await verifier.verify(accessToken)).valid);
    assert.equal(verifier.stats.signatureChecks, 3);
    assert.equal(verifier.stats.cacheHits, 0);
  });
});

describe("JWKS rotation and the refetch floor", () => {
  let gh: TokenGatehouse;
  before(async () => {
    gh = await startTokenGatehouse();
  });
  after(() => gh.close());

  test("a new key is fetched on its first unknown kid, at most once per floor", async () => {
    const clock = manualClock(Date.now());
    const counter = pathCountingFetch();
    const verifier = gh.verifier({ clock, fetch: counter.fetch, jwks: { refetchFloorMs: 30_000 } });
    const jwksFetches = () => counter.count(JWKS_PATH);

    const first = await gh.signIn();
    assert.equal((await verifier.verify(first.accessToken)).valid, true);
    assert.equal(jwksFetches(), 1);

    // Rotation 1: the key published as `next` before starts signing. It was in the JWKS
    // this verifier already holds, so no fetch is needed.
    const one = await gh.rotate();
    const second = await gh.signIn();
    assert.equal(decodeProtectedHeader(second.accessToken).kid, one.current);
    assert.equal((await verifier.verify(second.accessToken)).valid, true);
    assert.equal(jwksFetches(), 1);

    // Rotation 2: now signing is a key created after our fetch: an unknown kid.
    const two = await gh.rotate();
    const third = await gh.signIn();
    assert.equal(decodeProtectedHeader(third.accessToken).kid, two.current);
    // Inside the floor (no time has passed since the first fetch): refused, nothing fetched.
    assert.deepEqual(await verifier.verify(third.accessToken), {
      valid: false,
      code: "INVALID_TOKEN",
      reason: "UNKNOWN_KEY",
    });
    for (let i = 0; i < 20; i++) {
      const forged = await gh.resign(first.accessToken, { header: { kid: `forged-kid-${i}-0123456789abcdef` } });
      assert.equal((await verifier.verify(forged)).valid, false);
    }
    assert.equal(jwksFetches(), 1, "unknown kids inside the floor cause no fetch");

    // Past the floor, the new key is fetched once and the token accepted.
    clock.advance(30_000);
    assert.equal((await verifier.verify(third.accessToken)).valid, true);
    assert.equal(jwksFetches(), 2);

    // A storm of unknown kids right after: still that one fetch.
    const forged = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        gh.resign(first.accessToken, { header: { kid: `storm-kid-${i}-0123456789abcdef` } }),
      ),
    );
    await Promise.all(forged.map((token) => verifier.verify(token)));
    assert.equal(jwksFetches(), 2);
    // Past the next floor, concurrent unknown kids share a single fetch.
    clock.advance(30_000);
    const results = await Promise.all(forged.map((token) => verifier.verify(token)));
    assert.ok(results.every((result) => !result.valid));
    assert.equal(jwksFetches(), 3);
    assert.equal(verifier.stats.jwksFetches, 3);
  });

  test("an unreachable JWKS is no verdict: VerifierError (503 in the guards), and not retried inside the floor", async () => {
    const clock = manualClock(Date.now());
    const counter = pathCountingFetch();
    const jwksUri = `${await deadUrl()}${JWKS_PATH}`;
    const verifier = gh.verifier({ clock, fetch: counter.fetch, jwksUri });
    const { accessToken } = await gh.signIn();
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        verifier.verify(accessToken),
        (error) => error instanceof VerifierError && error.code === "UNREACHABLE",
      );
    }
    assert.equal(counter.count(JWKS_PATH), 1);
  });

  test("a JWKS endpoint answering something else than a JWK Set is INVALID_RESPONSE", async () => {
    const verifier = gh.verifier({ jwksUri: `${gh.server.url}/auth/me` });
    const { accessToken } = await gh.signIn();
    await assert.rejects(
      verifier.verify(accessToken),
      (error) => error instanceof VerifierError && error.code === "INVALID_RESPONSE" && error.status === 401,
    );
  });
});

describe("the revocation check", () => {
  let gh: TokenGatehouse;
  before(async () => {
    gh = await startTokenGatehouse();
  });
  after(() => gh.close());

  test("on: a logged-out token is refused once the answer's TTL has run out", async () => {
    const clock = manualClock(Date.now());
    const counter = pathCountingFetch();
    const verifier = gh.verifier({
      clock,
      fetch: counter.fetch,
      revocationCheck: { baseUrl: gh.server.url, ttlMs: 5_000 },
    });
    const { accessToken } = await gh.signIn();
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal(counter.count("/auth/me"), 1);
    const hit = await verifier.verify(accessToken);
    assert.ok(hit.valid && hit.cached);
    assert.equal(counter.count("/auth/me"), 1, "the answer is reused within the TTL");

    assert.equal(await gh.logout(accessToken), 204);
    // The documented revocation delay: up to ttlMs.
    clock.advance(4_999);
    assert.equal((await verifier.verify(accessToken)).valid, true);
    clock.advance(1);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
    assert.equal(counter.count("/auth/me"), 2);
    // A revoked token stays refused without asking again.
    clock.advance(60_000);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
    assert.equal(counter.count("/auth/me"), 2);
    assert.equal(verifier.stats.revocationChecks, 2);
  });

  test("on, with the cache of verified tokens off: the answer is still reused for ttlMs", async () => {
    const clock = manualClock(Date.now());
    const counter = pathCountingFetch();
    const verifier = gh.verifier({
      clock,
      fetch: counter.fetch,
      cache: { maxEntries: 0 },
      revocationCheck: { baseUrl: gh.server.url, ttlMs: 5_000 },
    });
    const { accessToken } = await gh.signIn();
    for (let i = 0; i < 3; i++) {
      const result = await verifier.verify(accessToken);
      assert.ok(result.valid && !result.cached, "every request checks the signature");
    }
    assert.equal(counter.count("/auth/me"), 1, "one question to Gatehouse within the TTL");
    assert.equal(verifier.stats.signatureChecks, 3);

    assert.equal(await gh.logout(accessToken), 204);
    clock.advance(4_999);
    assert.equal((await verifier.verify(accessToken)).valid, true, "within the documented delay");
    clock.advance(1);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
    clock.advance(60_000);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
    assert.equal(counter.count("/auth/me"), 2, "a refusal is remembered without asking again");
  });

  test("on with ttlMs 0: refused on the very next request after logout", async () => {
    const verifier = gh.verifier({ revocationCheck: { baseUrl: gh.server.url, ttlMs: 0 } });
    const { accessToken } = await gh.signIn();
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal(await gh.logout(accessToken), 204);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
  });

  test("on: a disabled user's token is refused too", async () => {
    const verifier = gh.verifier({ revocationCheck: { baseUrl: gh.server.url, ttlMs: 0 } });
    const { userId, accessToken } = await gh.signIn();
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal((await gh.server.call("POST", `/v1/users/${userId}/disable`)).status, 200);
    assert.deepEqual(await verifier.verify(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "REVOKED" });
  });

  test("off (the default): a logged-out token is accepted locally until it expires", async () => {
    const clock = manualClock(Date.now());
    const counter = pathCountingFetch();
    const verifier = gh.verifier({ clock, fetch: counter.fetch });
    const uncached = gh.verifier({ clock, cache: { maxEntries: 0 } });
    const { accessToken } = await gh.signIn();
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal(await gh.logout(accessToken), 204);
    assert.equal((await verifier.verify(accessToken)).valid, true, "the documented trade-off");
    assert.equal((await uncached.verify(accessToken)).valid, true, "with or without the cache");
    assert.equal(counter.count("/auth/me"), 0);
    clock.set(Number(decodeJwt(accessToken).exp) * 1000 + 5_001);
    assert.equal((await verifier.verify(accessToken)).valid, false);
    assert.equal((await uncached.verify(accessToken)).valid, false);
  });

  test("on, Gatehouse unreachable: no verdict (VerifierError), never a pass", async () => {
    const verifier = gh.verifier({ revocationCheck: { baseUrl: await deadUrl() } });
    const { accessToken } = await gh.signIn();
    await assert.rejects(
      verifier.verify(accessToken),
      (error) => error instanceof VerifierError && error.code === "UNREACHABLE",
    );
    // The token itself verified: the next request asks again rather than passing.
    await assert.rejects(verifier.verify(accessToken), VerifierError);
  });
});
