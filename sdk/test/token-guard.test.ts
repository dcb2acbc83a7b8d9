import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { decodeJwt } from "jose";
import { gatehousePlugin, requireKey, requireToken } from "../src/fastify.ts";
import { createKeyVerifier, guardToken, type TokenVerifier } from "../src/index.ts";
import { close, deadUrl, listen } from "./support/gatehouse.ts";
import { startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

const bearer = (token: string) => ({ headers: { authorization: `Bearer ${token}` } });

async function get(url: string, init: RequestInit = {}) {
  const response = await fetch(url, init);
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) };
}

describe("requireToken: the Fastify plugin, one line per route", () => {
  let gh: TokenGatehouse;
  let verifier: TokenVerifier;
  let app: FastifyInstance;
  let url: string;
  before(async () => {
    gh = await startTokenGatehouse();
    verifier = gh.verifier();
    const serviceKey = (
      await gh.server.call("POST", "/v1/keys", { name: "sdk verifier", scopes: [], permissions: ["keys:verify"] })
    ).body.key;
    app = Fastify({ logger: false });
    await app.register(gatehousePlugin, {
      verifier: createKeyVerifier({ baseUrl: gh.server.url, serviceKey }),
      tokenVerifier: verifier,
      realm: "payments",
    });
    app.get("/payments", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async (request) => ({
      token: request.gatehouseToken,
      key: request.gatehouseKey,
    }));
    await app.register(async (child) => {
      child.post("/payments", { preHandler: requireToken({ scopes: ["payments:write"] }) }, async (request) => ({
        sub: request.gatehouseToken?.sub,
      }));
    });
    app.get("/by-key", { preHandler: requireKey() }, async () => ({ ok: true }));
    app.get("/public", async (request) => ({ token: request.gatehouseToken }));
    url = await app.listen({ port: 0, host: "127.0.0.1" });
  });
  after(async () => {
    await app.close();
    await gh.close();
  });

  test("a valid token: 200, request.gatehouseToken has sub, scopes and claims", async () => {
    const { userId, accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    const r = await get(`${url}/payments`, bearer(accessToken));
    assert.equal(r.status, 200);
    assert.equal(r.body.token.sub, userId);
    assert.deepEqual(r.body.token.scopes, ["payments:read"]);
    assert.equal(r.body.token.claims.jti, decodeJwt(accessToken).jti);
    assert.equal(r.body.key, null);
    assert.equal((await get(`${url}/public`)).body.token, null, "unguarded routes see null");
  });

  test("missing token 401 without an error code; a bad token 401 invalid_token", async () => {
    const missing = await get(`${url}/payments`);
    assert.equal(missing.status, 401);
    assert.equal(missing.headers.get("www-authenticate"), 'Bearer realm="payments"');
    assert.match(missing.headers.get("content-type") ?? "", /^application\/problem\+json/);
    assert.equal(missing.headers.get("cache-control"), "no-store");
    const bad = await get(`${url}/payments`, bearer("eyJhbGciOiJub25lIn0.e30."));
    assert.equal(bad.status, 401);
    assert.equal(bad.headers.get("www-authenticate"), 'Bearer realm="payments", error="invalid_token"');
    assert.equal(bad.body.code, "INVALID_TOKEN");
    const basic = await get(`${url}/payments`, { headers: { authorization: "Basic dXNlcjpwYXNz" } });
    assert.equal(basic.text, missing.text, "another scheme presents nothing");
  });

  test("wrong scope: 403 insufficient_scope with the scope in the challenge", async () => {
    const { accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    const r = await get(`${url}/payments`, { method: "POST", ...bearer(accessToken) });
    assert.equal(r.status, 403);
    assert.equal(
      r.headers.get("www-authenticate"),
      'Bearer realm="payments", error="insufficient_scope", scope="payments:write"',
    );
    assert.equal(r.body.code, "INSUFFICIENT_SCOPE");
    assert.deepEqual(r.body.requiredScopes, ["payments:write"]);
  });

  test("a token in the query string: 400, never verified, even next to a valid header", async () => {
    const { accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    const before = verifier.stats;
    for (const query of [`access_token=${accessToken}`, `q=${accessToken}`, `token=x`, `next=/x?t=${accessToken}`]) {
      const r = await get(`${url}/payments?${query}`, bearer(accessToken));
      assert.equal(r.status, 400, query);
      assert.equal(r.body.code, "KEY_IN_URL", query);
    }
    assert.deepEqual(verifier.stats, before);
    // The key guard refuses a JWT in the URL the same way.
    assert.equal((await get(`${url}/by-key?q=${accessToken}`)).body.code, "KEY_IN_URL");
  });

  test("an access token is not an API key, and an API key is not an access token", async () => {
    const { accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    assert.equal((await get(`${url}/by-key`, bearer(accessToken))).status, 401);
    const key = (await gh.server.call("POST", "/v1/keys", { name: "k", scopes: ["payments:read"] })).body.key;
    const r = await get(`${url}/payments`, bearer(key));
    assert.equal(r.status, 401);
    assert.equal(r.body.code, "INVALID_TOKEN");
  });

  test("JWKS unreachable: 503 with Retry-After, never a pass", async () => {
    const down = Fastify({ logger: false });
    await down.register(gatehousePlugin, {
      tokenVerifier: gh.verifier({ jwksUri: `${await deadUrl()}/.well-known/jwks.json` }),
    });
    down.get("/x", { preHandler: requireToken() }, async () => ({ reached: true }));
    try {
      const { accessToken } = await gh.signIn();
      const r = await down.inject({ method: "GET", url: "/x", headers: { authorization: `Bearer ${accessToken}` } });
      assert.equal(r.statusCode, 503);
      assert.equal(r.headers["retry-after"], "5");
      assert.equal(JSON.parse(r.body).code, "VERIFIER_UNAVAILABLE");
    } finally {
      await down.close();
    }
  });

  test("requireToken without a tokenVerifier fails closed (500); bad scopes fail at declaration", async () => {
    const bare = Fastify({ logger: false });
    await bare.register(gatehousePlugin, { verifier: createKeyVerifier({ baseUrl: gh.server.url, serviceKey: "k" }) });
    bare.get("/x", { preHandler: requireToken() }, async () => ({ reached: true }));
    const { accessToken } = await gh.signIn();
    const r = await bare.inject({ method: "GET", url: "/x", headers: { authorization: `Bearer ${accessToken}` } });
    assert.equal(r.statusCode, 500);
    assert.doesNotMatch(r.body, /reached/);
    await bare.close();
    assert.throws(() => requireToken({ scopes: ["has space"] }), TypeError);
    const empty = Fastify({ logger: false });
    // @ts-expect-error: neither verifier given
    await assert.rejects(empty.register(gatehousePlugin, {}).ready(), TypeError);
  });
});

describe("guardToken on node:http", () => {
  let gh: TokenGatehouse;
  let server: Server;
  let url: string;
  before(async () => {
    gh = await startTokenGatehouse();
    const verifier = gh.verifier();
    server = createServer(async (req, res) => {
      const result = await guardToken(req, { verifier, scopes: ["payments:read"] });
      if (!result.ok) return res.writeHead(result.status, result.headers).end(JSON.stringify(result.body));
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ sub: result.token.sub }));
    });
    url = await listen(server);
  });
  after(async () => {
    await close(server);
    await gh.close();
  });

  test("valid 200, expired or forged 401 with one body, wrong scope 403, query 400", async () => {
    const { userId, accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    const ok = await get(`${url}/payments`, bearer(accessToken));
    assert.deepEqual({ status: ok.status, sub: ok.body.sub }, { status: 200, sub: userId });

    const now = Math.floor(Date.now() / 1000);
    const expired = await gh.resign(accessToken, { claims: { iat: now - 1000, exp: now - 60 } });
    const forged = await gh.resign(accessToken, { header: { kid: "forged-kid-0123456789abcdef" } });
    const [a, b] = [await get(`${url}/`, bearer(expired)), await get(`${url}/`, bearer(forged))];
    assert.deepEqual([a.status, b.status], [401, 401]);
    assert.equal(a.text, b.text);

    const { accessToken: readless } = await gh.signIn({ scopes: ["profile"] });
    assert.equal((await get(`${url}/`, bearer(readless))).status, 403);
    assert.equal((await get(`${url}/?access_token=${accessToken}`)).status, 400);
  });

  test("two Authorization values handed over as a list: 400 invalid_request", async () => {
    const result = await guardToken(
      { headers: { authorization: ["Bearer a.b.c", "Bearer d.e.f"] } },
      { verifier: gh.verifier() },
    );
    assert.ok(!result.ok);
    assert.equal(result.status, 400);
    assert.equal(result.headers["www-authenticate"], 'Bearer realm="api", error="invalid_request"');
  });
});
