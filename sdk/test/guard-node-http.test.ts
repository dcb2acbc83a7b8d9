import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { createKeyVerifier, type GuardOptions, guard, type KeyVerifier } from "../src/index.ts";
import {
  close,
  countingFetch,
  deadUrl,
  listen,
  malformedKeys,
  startGatehouse,
  type TestGatehouse,
} from "./support/gatehouse.ts";

/** A plain node:http API guarded by the SDK, the way the README shows it. */
function guardedApi(verifier: KeyVerifier, scopes: string[], clock?: () => number): Server {
  return createServer(async (req, res) => {
    const options: GuardOptions = { verifier, scopes, realm: "payments", ...(clock ? { clock } : {}) };
    const result = await guard(req, options);
    if (!result.ok) {
      res.writeHead(result.status, result.headers).end(JSON.stringify(result.body));
      return;
    }
    res.writeHead(200, { ...result.headers, "content-type": "application/json" });
    res.end(JSON.stringify({ key: result.key }));
  });
}

async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: JSON.parse(text) };
}

describe("guard() in a node:http server, against a real Gatehouse", () => {
  const clock = manualClock(Date.now());
  let gh: TestGatehouse;
  let api: Server;
  let apiUrl: string;
  let counter: ReturnType<typeof countingFetch>;
  before(async () => {
    // Gatehouse runs on a clock we move, so a key can expire without waiting.
    gh = await startGatehouse({ clock });
    counter = countingFetch();
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey, fetch: counter.fetch });
    // The guard reads the same clock: t= and Retry-After count from Gatehouse's "now".
    api = guardedApi(verifier, ["payments:read"], clock);
    apiUrl = `${await listen(api)}/payments`;
  });
  after(async () => {
    await close(api);
    await gh.close();
  });

  test("a valid key passes and the handler sees who it is", async () => {
    const { key, id } = await gh.createKey({ scopes: ["payments:read"] });
    const r = await get(apiUrl, { authorization: `Bearer ${key}` });
    assert.equal(r.status, 200);
    assert.equal(r.body.key.keyId, id);
    assert.deepEqual(r.body.key.scopes, ["payments:read"]);
    assert.equal(r.headers.get("ratelimit-policy"), '"key";q=1000');
    assert.match(r.headers.get("ratelimit") ?? "", /^"key";r=999;t=\d+$/);
  });

  test("X-API-Key works the same as Authorization: Bearer", async () => {
    const { key, id } = await gh.createKey({ scopes: ["payments:read"] });
    const r = await get(apiUrl, { "x-api-key": key });
    assert.equal(r.status, 200);
    assert.equal(r.body.key.keyId, id);
    // The Bearer scheme name is case-insensitive (RFC 9110 §11.1).
    assert.equal((await get(apiUrl, { authorization: `bearer ${key}` })).status, 200);
  });

  test("no key: 401 with a bare Bearer challenge (RFC 6750 §3.1) and the problem body", async () => {
    for (const headers of [{}, { authorization: "Basic dXNlcjpwYXNz" }]) {
      const r = await get(apiUrl, headers);
      assert.equal(r.status, 401);
      assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="payments"');
      assert.equal(r.headers.get("content-type"), "application/problem+json");
      assert.equal(r.body.code, "UNAUTHENTICATED");
      assert.equal(r.body.status, 401);
      assert.equal(r.body.type, "urn:gatehouse:error:UNAUTHENTICATED");
    }
  });

  test("unknown, revoked, expired and malformed keys all get the same 401, byte for byte", async () => {
    const revoked = await gh.createKey({ scopes: ["payments:read"] });
    await gh.revoke(revoked.id);
    const expired = await gh.createKey({ scopes: ["payments:read"], expiresInSeconds: 60 });
    clock.advance(61_000);
    const missing = await get(apiUrl);
    const bad = [generateKey("gate"), revoked.key, expired.key, ...malformedKeys(revoked.key)];
    const answers = [];
    for (const key of bad) answers.push(await get(apiUrl, { authorization: `Bearer ${key}` }));
    answers.push(await get(apiUrl, { "x-api-key": generateKey("gate") }));
    for (const [i, r] of answers.entries()) {
      assert.equal(r.status, 401, `case ${i}`);
      assert.equal(r.text, missing.text, `case ${i}: body must not tell the cases apart`);
      assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="payments", error="invalid_token"', `case ${i}`);
      assert.equal(r.headers.get("ratelimit"), null, `case ${i}`);
    }
  });

  test("a key without the scope: 403 insufficient_scope naming the scope", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:write"] });
    const r = await get(apiUrl, { authorization: `Bearer ${key}` });
    assert.equal(r.status, 403);
    assert.equal(
      r.headers.get("www-authenticate"),
      'Bearer realm="payments", error="insufficient_scope", scope="payments:read"',
    );
    assert.equal(r.body.code, "INSUFFICIENT_SCOPE");
    assert.deepEqual(r.body.requiredScopes, ["payments:read"]);
  });

  test("over the key's rate limit: 429 with Retry-After and RateLimit headers", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"], rateLimit: { limit: 2, windowSeconds: 60 } });
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await get(apiUrl, { authorization: `Bearer ${key}` })).status);
    assert.deepEqual(statuses, [200, 200, 429]);
    const r = await get(apiUrl, { authorization: `Bearer ${key}` });
    assert.equal(r.status, 429);
    const retryAfter = Number(r.headers.get("retry-after"));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(r.headers.get("ratelimit-policy"), '"key";q=2');
    assert.equal(r.headers.get("ratelimit"), `"key";r=0;t=${retryAfter}`);
    assert.equal(r.body.code, "RATE_LIMITED");
  });

  test("a key in the query string is refused with 400 and never sent to Gatehouse", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"] });
    const before = counter.count;
    const urls = [
      `${apiUrl}?api_key=${key}`,
      `${apiUrl}?apikey=anything`,
      `${apiUrl}?access_token=x&page=2`,
      `${apiUrl}?token=x`,
      `${apiUrl}?KEY=x`,
      `${apiUrl}?q=${encodeURIComponent(key)}`,
      `${apiUrl}?note=my%20key%20is%20${key}`,
      `${apiUrl}?${key}`,
    ];
    for (const url of urls) {
      // Even with a valid key in the header: the URL one has leaked and must be fixed.
      const r = await get(url, { authorization: `Bearer ${key}` });
      assert.equal(r.status, 400, url);
      assert.equal(r.body.code, "KEY_IN_URL", url);
      assert.match(r.body.detail, /must not be sent in the URL/);
    }
    assert.equal(counter.count, before, "no verification was attempted");
    // Ordinary query strings are fine.
    assert.equal((await get(`${apiUrl}?page=2&sort=desc`, { authorization: `Bearer ${key}` })).status, 200);
  });

  test("a key in both headers is ambiguous: 400 invalid_request", async () => {
    const { key } = await gh.createKey({ scopes: ["payments:read"] });
    const r = await get(apiUrl, { authorization: `Bearer ${key}`, "x-api-key": key });
    assert.equal(r.status, 400);
    assert.equal(r.body.code, "AMBIGUOUS_CREDENTIALS");
    assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="payments", error="invalid_request"');
  });

  test("without a cache (the default), revocation takes effect on the next request", async () => {
    const { key, id } = await gh.createKey({ scopes: ["payments:read"] });
    const before = counter.count;
    assert.equal((await get(apiUrl, { authorization: `Bearer ${key}` })).status, 200);
    assert.equal((await get(apiUrl, { authorization: `Bearer ${key}` })).status, 200);
    await gh.revoke(id);
    assert.equal((await get(apiUrl, { authorization: `Bearer ${key}` })).status, 401);
    assert.equal(counter.count - before, 3, "every request asked Gatehouse");
  });

  test("Gatehouse unreachable: 503 with Retry-After, never a pass", async () => {
    const verifier = createKeyVerifier({ baseUrl: await deadUrl(), serviceKey: gh.serviceKey });
    const down = guardedApi(verifier, ["payments:read"]);
    const url = await listen(down);
    try {
      const { key } = await gh.createKey({ scopes: ["payments:read"] });
      const r = await get(`${url}/payments`, { authorization: `Bearer ${key}` });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "5");
      assert.equal(r.body.code, "VERIFIER_UNAVAILABLE");
      assert.doesNotMatch(r.text, /127\.0\.0\.1|ECONNREFUSED|service key/i, "nothing internal leaks");
    } finally {
      await close(down);
    }
  });

  test("Gatehouse answering 5xx or refusing the service key: 503, its Retry-After kept", async () => {
    const sick = createServer((_req, res) => {
      res.writeHead(503, { "content-type": "application/problem+json", "retry-after": "9" });
      res.end(JSON.stringify({ type: "urn:gatehouse:error:STORAGE_UNAVAILABLE", status: 503 }));
    });
    const sickUrl = await listen(sick);
    const apis = [
      guardedApi(createKeyVerifier({ baseUrl: sickUrl, serviceKey: gh.serviceKey }), []),
      guardedApi(createKeyVerifier({ baseUrl: gh.url, serviceKey: generateKey("gate") }), []),
    ];
    try {
      const { key } = await gh.createKey();
      const [sickApi, misconfigured] = await Promise.all(apis.map(listen));
      const r = await get(`${sickApi}/`, { authorization: `Bearer ${key}` });
      assert.equal(r.status, 503);
      assert.equal(r.headers.get("retry-after"), "9");
      const m = await get(`${misconfigured}/`, { authorization: `Bearer ${key}` });
      assert.equal(m.status, 503, "a rejected service key is our fault, not the client's: never 401");
      assert.equal(m.text, r.text);
    } finally {
      await Promise.all([close(sick), ...apis.map(close)]);
    }
  });

  test("guard() accepts Fetch API requests too (Hono, Request objects)", async () => {
    const { key, id } = await gh.createKey({ scopes: ["payments:read"] });
    const verifier = createKeyVerifier({ baseUrl: gh.url, serviceKey: gh.serviceKey });
    const ok = await guard(new Request("http://api.test/payments", { headers: { "X-API-Key": key } }), {
      verifier,
      scopes: ["payments:read"],
    });
    assert.equal(ok.ok && ok.key.keyId, id);
    const inUrl = await guard(new Request(`http://api.test/payments?token=${key}`), { verifier });
    assert.equal(!inUrl.ok && inUrl.status, 400);
    // A hand-built header object with capitalised names.
    const plain = await guard({ headers: { Authorization: `Bearer ${key}` }, url: "/" }, { verifier });
    assert.equal(plain.ok, true);
  });
});
