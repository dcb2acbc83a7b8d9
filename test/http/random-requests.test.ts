import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

/**
 * Random requests against every route: random methods, ids, query strings, credentials,
 * content types and JSON bodies (nested, huge numbers, NUL, lone surrogates, __proto__).
 * Whatever arrives, the answer is never a 5xx (but BUSY or STORAGE_UNAVAILABLE), an error
 * is always JSON (problem+json), no answer carries a stack trace, and the server still
 * answers /healthz after. Seeded (GATEHOUSE_TEST_SEED) so a failure can be replayed.
 */
const REQUESTS = 800;

/** A small linear congruential generator: the same seed, the same requests. */
function generator(start: number) {
  let seed = start;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  return { rand, pick };
}

const ROUTES = [
  "/.well-known/jwks.json",
  "/auth/login",
  "/auth/logout",
  "/auth/me",
  "/auth/password",
  "/auth/refresh",
  "/auth/session",
  "/auth/sessions",
  "/auth/sessions/:id",
  "/auth/sign-ins",
  "/auth/sign-ins/:id",
  "/auth/signup",
  "/metrics",
  "/v1/audit",
  "/v1/keys",
  "/v1/keys/:id",
  "/v1/keys/:id/revoke",
  "/v1/keys/:id/rotate",
  "/v1/keys/:id/usage",
  "/v1/keys/verify",
  "/v1/leaks/github",
  "/v1/users",
  "/v1/users/:id",
  "/v1/users/:id/disable",
  "/v1/users/:id/enable",
  "/v1/users/:id/password",
  "/v1/users/:id/sessions",
  "/healthz",
  "/readyz",
];
const METHODS = ["GET", "POST", "PATCH", "DELETE", "PUT", "HEAD", "OPTIONS"];
const QUERIES = [
  "",
  "?limit=5",
  "?limit=0",
  "?limit=abc",
  "?cursor=zz",
  "?interval=minute",
  "?interval=day&since=x",
  "?action=key.create&outcome=failure",
  "?ownerId=%00",
  "?a=1&a=2",
  "?since=1e400",
];
const CONTENT_TYPES = [
  "application/json",
  "application/json; charset=utf-16",
  "text/plain",
  "application/x-www-form-urlencoded",
  "application/json; charset=utf-8",
  "application/merge-patch+json",
];
const FIELDS = [
  "name",
  "scopes",
  "permissions",
  "expiresInSeconds",
  "rateLimit",
  "ownerId",
  "metadata",
  "allowedAddresses",
  "key",
  "address",
  "gracePeriodSeconds",
  "reason",
  "email",
  "password",
  "currentPassword",
  "newPassword",
  "refresh_token",
  "limit",
  "windowSeconds",
  "__proto__",
];
const NUMBERS = [0, -1, 1, 1.5, 1e308, -1e308, 2 ** 53, 2 ** 31, 60, 3600, Number.MAX_SAFE_INTEGER];
const RAW_BODIES = ["{", "[]", "null", "1", '"s"', '{"a":1,"a":2}', '{"__proto__":{"x":1}}', "\u0000"];

for (const backend of backends()) {
  describe(`random requests (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend, {
        env: {
          GATEHOUSE_SIGNUP_ENABLED: "true",
          GATEHOUSE_ALLOWED_ORIGINS: "http://app.test",
          GATEHOUSE_TRUSTED_PROXIES: "127.0.0.1",
        },
      });
    });
    after(() => server.close());

    test(`${REQUESTS} requests: no 5xx, errors as JSON, no stack trace, still healthy`, async () => {
      const seed = Number(process.env.GATEHOUSE_TEST_SEED ?? 1);
      const { rand, pick } = generator(seed);
      const key = (await server.call("POST", "/v1/keys", { name: "k", scopes: ["a"] })).body;
      const password = "correct horse battery staple";
      const user = (await server.call("POST", "/v1/users", { email: "u@example.com", password })).body;
      const login = (await server.call("POST", "/auth/login", { email: "u@example.com", password }, { key: null }))
        .body;
      const strings = [
        "",
        "a",
        "x".repeat(300),
        "\u0000",
        "\ud800",
        "é",
        "𝔘",
        "../../etc/passwd",
        "%00",
        "key_0",
        key.id,
        user.id,
        `gate_${"A".repeat(49)}`,
        key.key,
        login.refresh_token,
        login.access_token,
        "10.0.0.0/8",
        "::1",
        "1e309",
        "null",
        "__proto__",
        "constructor",
        "u@example.com",
        "U@EXAMPLE.COM",
        " u@example.com ",
        "a".repeat(5000),
      ];
      const ids = [key.id, user.id, "", "a", "x".repeat(300), "%00", "..%2F..%2Fetc", "key_0", "usr_0", "%F0%9D%94%98"];
      const credentials = [
        null,
        `Bearer ${server.adminKey}`,
        `Bearer ${key.key}`,
        "Bearer",
        `Bearer ${login.access_token}`,
        "Basic eDp5",
        `Bearer ${server.adminKey} x`,
      ];
      const value = (depth: number): unknown => {
        const r = rand();
        if (depth > 4 || r < 0.3) return pick(strings);
        if (r < 0.45) return pick(NUMBERS);
        if (r < 0.5) return pick([true, false, null]);
        if (r < 0.75) return Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1));
        const object: Record<string, unknown> = {};
        for (let i = Math.floor(rand() * 5); i > 0; i--) object[pick(FIELDS)] = value(depth + 1);
        return object;
      };

      // Half the requests start from a valid one and change one thing, so they reach the
      // handlers and not only the schemas.
      const valid: Array<[string, string, Record<string, unknown>]> = [
        ["POST", "/v1/keys", { name: "n", scopes: ["a"], rateLimit: { limit: 5, windowSeconds: 60 } }],
        ["PATCH", `/v1/keys/${key.id}`, { name: "n", allowedAddresses: ["10.0.0.0/8"] }],
        ["POST", `/v1/keys/${key.id}/rotate`, { gracePeriodSeconds: 60 }],
        ["POST", `/v1/keys/${key.id}/revoke`, { reason: "r" }],
        ["POST", "/v1/keys/verify", { key: key.key, scopes: ["a"], address: "192.0.2.1" }],
        ["POST", "/v1/users", { email: "v@example.com", password }],
        ["PATCH", `/v1/users/${user.id}`, { scopes: ["a"] }],
        ["POST", `/v1/users/${user.id}/password`, { password: `${password}!` }],
        ["POST", "/auth/login", { email: "u@example.com", password }],
        ["POST", "/auth/refresh", { refresh_token: login.refresh_token }],
        ["POST", "/auth/logout", { refresh_token: login.refresh_token }],
        ["POST", "/auth/signup", { email: "w@example.com", password }],
        ["POST", "/auth/password", { currentPassword: password, newPassword: `${password}?` }],
        ["POST", "/auth/session", { email: "u@example.com", password }],
      ];

      const wrong: string[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        let method = pick(METHODS);
        let path = pick(ROUTES).replace(":id", pick(ids)) + pick(QUERIES);
        let template: Record<string, unknown> | null = null;
        if (rand() < 0.5) {
          const [m, p, b] = pick(valid);
          method = m;
          path = p;
          template = { ...b };
          const field = pick([...Object.keys(template), pick(FIELDS)]);
          if (rand() < 0.3) delete template[field];
          else template[field] = value(1);
        }
        const headers: Record<string, string> = {};
        const credential = template !== null && rand() < 0.8 ? `Bearer ${server.adminKey}` : pick(credentials);
        if (credential !== null) headers.authorization = credential;
        if (rand() < 0.2) headers.origin = pick(["http://app.test", "null", "http://evil.test"]);
        if (rand() < 0.2) headers["x-forwarded-for"] = pick(["192.0.2.4", "::1", "garbage", "192.0.2.4, 198.51.100.8"]);
        if (rand() < 0.1) headers.cookie = pick(["__Host-gh_session=abc", `a=b; __Host-gh_session=${"x".repeat(100)}`]);
        let body: string | undefined;
        if (template !== null) {
          body = JSON.stringify(template);
          headers["content-type"] = rand() < 0.9 ? "application/json" : pick(CONTENT_TYPES);
        } else if (method !== "GET" && method !== "HEAD" && rand() < 0.9) {
          body = rand() < 0.1 ? pick(RAW_BODIES) : JSON.stringify(value(0));
          headers["content-type"] = pick(CONTENT_TYPES);
        }
        const response = await fetch(`${server.url}${path}`, {
          method,
          headers,
          ...(body === undefined ? {} : { body }),
        });
        const text = await response.text();
        const said = `${method} ${path} ${body?.slice(0, 120) ?? ""} -> ${response.status} ${text.slice(0, 160)}`;
        if (response.status >= 500 && !(response.status === 503 && /BUSY|STORAGE_UNAVAILABLE/.test(text)))
          wrong.push(said);
        if (
          response.status >= 400 &&
          method !== "HEAD" &&
          !(response.headers.get("content-type") ?? "").includes("json")
        )
          wrong.push(`not JSON: ${said}`);
        if (/at [\w.<>]+ \(|node:internal|\.ts:\d+:\d+/.test(text)) wrong.push(`stack trace: ${said}`);
      }
      assert.deepEqual(wrong, [], `seed ${seed}`);
      assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    });
  });
}
