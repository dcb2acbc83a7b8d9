import assert from "node:assert/strict";
import { createHmac, randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import Fastify from "fastify";
import { gatehousePlugin, requireToken } from "../src/fastify.ts";
import { createTokenVerifier, guardToken, guardTokenNow } from "../src/index.ts";
import { b64, pathCountingFetch, segments, startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

const SECRET = randomBytes(32);
const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

/**
 * `verifyNow` and `guardTokenNow` answer at once only where no I/O is needed, and then
 * exactly as `verify` and `guardToken` would; everywhere else they say null.
 */
describe("answers without a promise (verifyNow, guardTokenNow)", () => {
  let rsa: TokenGatehouse;
  let hs: TokenGatehouse;
  before(async () => {
    rsa = await startTokenGatehouse();
    hs = await startTokenGatehouse({
      env: { GATEHOUSE_JWT_ALG: "HS256", GATEHOUSE_JWT_HS256_SECRET: SECRET.toString("base64url") },
    });
  });
  after(async () => {
    await rsa.close();
    await hs.close();
  });

  test("JWKS: null until the token was verified once, then the cached verdict, scopes checked each time", async () => {
    const counting = pathCountingFetch();
    const verifier = rsa.verifier({ fetch: counting.fetch });
    const { accessToken, userId } = await rsa.signIn({ scopes: ["payments:read"] });
    assert.equal(verifier.verifyNow?.(accessToken), null);
    assert.equal(counting.count("/.well-known/jwks.json"), 0, "verifyNow never fetches");
    assert.equal((await verifier.verify(accessToken)).valid, true);
    const now = verifier.verifyNow?.(accessToken, { scopes: ["payments:read"] });
    assert.ok(now?.valid && now.cached && now.token.sub === userId);
    assert.deepEqual(
      verifier.verifyNow?.(accessToken, { scopes: ["payments:write"] }),
      await verifier.verify(accessToken, { scopes: ["payments:write"] }),
    );
    // Malformed input is refused at once, as verify refuses it.
    assert.deepEqual(verifier.verifyNow?.("x".repeat(20_000)), await verifier.verify("x".repeat(20_000)));
    assert.deepEqual(guardTokenNow(bearer("a.b.c"), { verifier }), await guardToken(bearer("a.b.c"), { verifier }));
    assert.deepEqual(
      guardTokenNow(bearer(accessToken), { verifier }),
      await guardToken(bearer(accessToken), { verifier }),
    );
  });

  test("JWKS: a new token under a kid already resolved is checked at once, with the answers verify gives", async () => {
    const counting = pathCountingFetch();
    const verifier = rsa.verifier({ fetch: counting.fetch });
    const first = await rsa.signIn({ scopes: ["payments:read"] });
    assert.equal((await verifier.verify(first.accessToken)).valid, true);
    const fetches = counting.count("/.well-known/jwks.json");
    const second = await rsa.signIn({ scopes: ["payments:read"] });
    const now = verifier.verifyNow?.(second.accessToken, { scopes: ["payments:read"] });
    assert.ok(now?.valid && !now.cached && now.token.sub === second.userId, JSON.stringify(now));
    const [header, payload, signature] = segments((await rsa.signIn()).accessToken);
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    const wrongs = [
      `${header}.${payload}.${signature.startsWith("A") ? "B" : "A"}${signature.slice(1)}`, // BAD_SIGNATURE
      `${header}.${b64({ ...claims, sub: "usr_admin" })}.${signature}`, // claims changed under the signature
      `${b64({ alg: "HS256", typ: "at+jwt", kid: JSON.parse(Buffer.from(header, "base64url").toString()).kid })}.${payload}.${signature}`,
    ];
    for (const wrong of wrongs) {
      const at = verifier.verifyNow?.(wrong);
      assert.equal(at?.valid ?? false, false, wrong);
      // The alg HS256 is not allowed: not answered at once, and verify words the refusal.
      if (at !== null) assert.deepEqual(at, await verifier.verify(wrong), wrong);
    }
    assert.equal(counting.count("/.well-known/jwks.json"), fetches, "no fetch for a kid already resolved");
    // A kid never resolved: only the JWKS can say.
    const unknownKid = `${b64({ alg: "RS256", typ: "at+jwt", kid: "x".repeat(43) })}.${payload}.${signature}`;
    assert.equal(verifier.verifyNow?.(unknownKid), null);
  });

  test("JWKS: nothing is checked at once from a copy of the JWKS that is no longer fresh", async () => {
    // cacheMaxAgeMs 0: every use finds jose's copy stale, so every new token goes the way that refetches.
    const counting = pathCountingFetch();
    const verifier = rsa.verifier({ fetch: counting.fetch, jwks: { cacheMaxAgeMs: 0 } });
    assert.equal((await verifier.verify((await rsa.signIn()).accessToken)).valid, true);
    const { accessToken } = await rsa.signIn();
    assert.equal(verifier.verifyNow?.(accessToken), null);
    const before = counting.count("/.well-known/jwks.json");
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal(counting.count("/.well-known/jwks.json"), before + 1);
  });

  test("HS256: first-seen tokens are verified at once, with every refusal verify gives", async () => {
    const verifier = createTokenVerifier({ issuer: hs.issuer, audience: hs.audience, hs256Secret: SECRET });
    const { accessToken, userId } = await hs.signIn({ scopes: ["payments:read"] });
    const first = verifier.verifyNow?.(accessToken, { scopes: ["payments:read"] });
    assert.ok(first?.valid && !first.cached && first.token.sub === userId);
    const [header, payload, mac] = segments(accessToken);
    const flipped = `${mac.startsWith("A") ? "B" : "A"}${mac.slice(1)}`;
    for (const bad of [`${header}.${payload}.${flipped}`, `${header}.${payload}`, `${header}.e30.${mac}`]) {
      const fresh = () => createTokenVerifier({ issuer: hs.issuer, audience: hs.audience, hs256Secret: SECRET });
      const now = fresh().verifyNow?.(bad);
      assert.equal(now?.valid, false, bad);
      assert.deepEqual(now, await fresh().verify(bad), bad);
    }
    const other = createTokenVerifier({ issuer: hs.issuer, audience: hs.audience, hs256Secret: randomBytes(32) });
    assert.deepEqual(other.verifyNow?.(accessToken), { valid: false, code: "INVALID_TOKEN", reason: "UNKNOWN_KEY" });
    const refused = guardTokenNow(bearer(accessToken), { verifier, scopes: ["payments:write"] });
    assert.equal(refused?.ok, false);
    if (refused && !refused.ok) assert.equal(refused.status, 403);
    const missing = guardTokenNow({ headers: {} }, { verifier });
    assert.equal(missing?.ok === false && missing.status, 401);
  });

  test("checks remembered for speed still catch every caller mistake, call after call", async () => {
    const verifier = createTokenVerifier({ issuer: hs.issuer, audience: hs.audience, hs256Secret: SECRET });
    const { accessToken } = await hs.signIn({ scopes: ["payments:read"] });
    const frozen = Object.freeze(["payments:read"]);
    for (let i = 0; i < 2; i++) {
      assert.equal(guardTokenNow(bearer(accessToken), { verifier, scopes: frozen, realm: "api" })?.ok, true);
      // A mutable list is checked on every call: the same names pass, and a bad one added later throws.
      const mutable = ["payments:read"];
      assert.equal(verifier.verifyNow?.(accessToken, { scopes: mutable })?.valid, true);
      mutable.push("has space");
      assert.throws(() => verifier.verifyNow?.(accessToken, { scopes: mutable }), TypeError);
      assert.throws(() => guardTokenNow(bearer(accessToken), { verifier, scopes: frozen, realm: 'a"b' }), TypeError);
      assert.throws(() => guardTokenNow(bearer(accessToken), { verifier, realm: 42 as unknown as string }), TypeError);
      assert.throws(() => guardTokenNow(bearer(accessToken), { verifier, scopes: Object.freeze(["x y"]) }), TypeError);
    }
  });

  test("a verified token is frozen all the way down: a route cannot change what the next request sees", async () => {
    const verifier = createTokenVerifier({ issuer: hs.issuer, audience: [hs.audience, "other"], hs256Secret: SECRET });
    const { accessToken } = await hs.signIn({ scopes: ["payments:read"] });
    // The same claims with a list audience and a structured claim of a deployment's own, re-signed with the secret.
    const [header, payload] = segments(accessToken);
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
    const input = `${header}.${b64({ ...claims, aud: [hs.audience], tenant: { id: "t1", roles: ["admin"] } })}`;
    const token = `${input}.${createHmac("sha256", SECRET).update(input).digest("base64url")}`;
    const result = verifier.verifyNow?.(token);
    assert.ok(result?.valid, JSON.stringify(result));
    const { claims: verified } = result.token;
    const tenant = verified.tenant as { id: string; roles: string[] };
    for (const part of [result.token, result.token.scopes, verified, verified.aud, tenant, tenant.roles]) {
      assert.ok(Object.isFrozen(part), JSON.stringify(part));
    }
    assert.deepEqual(tenant, { id: "t1", roles: ["admin"] });
    const again = verifier.verifyNow?.(token);
    assert.ok(again?.valid && again.cached);
  });

  test("requireToken answers HS256 tokens on the synchronous path: 200, 401, 403 as always", async () => {
    const app = Fastify({ logger: false });
    const verifier = createTokenVerifier({ issuer: hs.issuer, audience: hs.audience, hs256Secret: SECRET });
    await app.register(gatehousePlugin, { tokenVerifier: verifier });
    app.get("/read", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async (request) => ({
      sub: request.gatehouseToken?.sub,
    }));
    app.get("/write", { preHandler: requireToken({ scopes: ["payments:write"] }) }, async () => ({ reached: true }));
    try {
      const { accessToken, userId } = await hs.signIn({ scopes: ["payments:read"] });
      const call = (url: string, token: string) =>
        app.inject({ method: "GET", url, headers: { authorization: `Bearer ${token}` } });
      const ok = await call("/read", accessToken);
      assert.equal(ok.statusCode, 200);
      assert.deepEqual(JSON.parse(ok.body), { sub: userId });
      const [header, payload, mac] = segments(accessToken);
      const forged = await call("/read", `${header}.${payload}.${mac.startsWith("A") ? "B" : "A"}${mac.slice(1)}`);
      assert.equal(forged.statusCode, 401);
      assert.equal(JSON.parse(forged.body).code, "INVALID_TOKEN");
      const scoped = await call("/write", accessToken);
      assert.equal(scoped.statusCode, 403);
      assert.equal(JSON.parse(scoped.body).code, "INSUFFICIENT_SCOPE");
      assert.equal(verifier.stats.signatureChecks, 2, "the valid token was checked once, then cached");
    } finally {
      await app.close();
    }
  });

  test("with a revocation check, nothing is answered at once: a logged-out token cannot slip through", async () => {
    const verifier = rsa.verifier({ revocationCheck: { baseUrl: rsa.server.url, ttlMs: 60_000 } });
    const { accessToken } = await rsa.signIn();
    assert.equal((await verifier.verify(accessToken)).valid, true);
    assert.equal(verifier.verifyNow?.(accessToken), null);
    const hsVerifier = createTokenVerifier({
      issuer: hs.issuer,
      audience: hs.audience,
      hs256Secret: SECRET,
      revocationCheck: { baseUrl: hs.server.url },
    });
    assert.equal(hsVerifier.verifyNow?.((await hs.signIn()).accessToken), null);
  });
});
