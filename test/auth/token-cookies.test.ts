import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, me, startAuthServer } from "./support.ts";

const ORIGIN = "https://app.example.com";

function cookieValue(setCookies: string[], name: string): string {
  const line = setCookies.find((c) => c.startsWith(`${name}=`));
  assert.ok(line, `${name} in ${setCookies.join(" | ")}`);
  return (line.split(";")[0] ?? "").slice(name.length + 1);
}

async function cookieLogin(server: TestServer, user: { email: string; password: string }) {
  const response = await fetch(`${server.url}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json", origin: ORIGIN },
    body: JSON.stringify({ email: user.email, password: user.password, delivery: "cookie" }),
  });
  assert.equal(response.status, 204);
  const setCookies = response.headers.getSetCookie();
  return {
    setCookies,
    access: cookieValue(setCookies, "__Host-gatehouse_access"),
    refresh: cookieValue(setCookies, "__Secure-gatehouse_refresh"),
    csrf: response.headers.get("x-csrf-token") ?? "",
  };
}

function refreshByCookie(server: TestServer, refresh: string, origin: string | null = ORIGIN) {
  return fetch(`${server.url}/auth/refresh`, {
    method: "POST",
    headers: { cookie: `__Secure-gatehouse_refresh=${refresh}`, ...(origin ? { origin } : {}) },
  });
}

for (const backend of backends()) {
  describe(`tokens delivered as HttpOnly cookies (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, { env: { GATEHOUSE_ALLOWED_ORIGINS: ORIGIN } });
    });
    after(() => server.close());

    test("login with delivery=cookie: no tokens in the body; access cookie for /, refresh cookie for /auth/refresh only", async () => {
      const user = await createUser(server);
      const login = await cookieLogin(server, user);
      const access = login.setCookies.find((c) => c.startsWith("__Host-gatehouse_access="));
      const refresh = login.setCookies.find((c) => c.startsWith("__Secure-gatehouse_refresh="));
      assert.match(access ?? "", /; Path=\/; Secure; HttpOnly; SameSite=Lax; Max-Age=900$/);
      assert.match(refresh ?? "", /; Path=\/auth\/refresh; Secure; HttpOnly; SameSite=Strict; Max-Age=\d+$/);
      assert.match(login.csrf, /^[A-Za-z0-9_-]{43}$/);
      const who = await server.call("GET", "/auth/me", undefined, {
        key: null,
        headers: { cookie: `__Host-gatehouse_access=${login.access}` },
      });
      assert.equal(who.status, 200);
      assert.equal(who.body.authenticatedBy, "token-cookie");
      assert.equal(who.body.sub, user.id);
    });

    test("refresh by cookie rotates both cookies; the CSRF token stays; replay revokes the family", async () => {
      const user = await createUser(server);
      const login = await cookieLogin(server, user);
      const refreshed = await refreshByCookie(server, login.refresh);
      assert.equal(refreshed.status, 204);
      const next = refreshed.headers.getSetCookie();
      const newRefresh = cookieValue(next, "__Secure-gatehouse_refresh");
      assert.notEqual(newRefresh, login.refresh);
      assert.equal(refreshed.headers.get("x-csrf-token"), login.csrf);
      assert.equal((await refreshByCookie(server, login.refresh)).status, 400);
      assert.equal((await refreshByCookie(server, newRefresh)).status, 400, "family revoked after reuse");
    });

    test("refresh by cookie from a foreign origin, or with no origin, is refused", async () => {
      const user = await createUser(server);
      const login = await cookieLogin(server, user);
      assert.equal((await refreshByCookie(server, login.refresh, "https://evil.example")).status, 403);
      assert.equal((await refreshByCookie(server, login.refresh, null)).status, 403);
      assert.equal((await refreshByCookie(server, login.refresh)).status, 204, "the token was not spent");
    });

    test("cookie-authenticated changes need the CSRF token; logout clears both cookies", async () => {
      const user = await createUser(server);
      const login = await cookieLogin(server, user);
      const logout = (headers: Record<string, string>) =>
        server.call("POST", "/auth/logout", undefined, {
          key: null,
          headers: { cookie: `__Host-gatehouse_access=${login.access}`, ...headers },
        });
      assert.equal((await logout({ origin: ORIGIN })).status, 403);
      assert.equal((await logout({ origin: "https://evil.example", "x-csrf-token": login.csrf })).status, 403);
      assert.equal((await logout({ origin: ORIGIN, "x-csrf-token": "é".repeat(login.csrf.length) })).status, 403);
      const done = await logout({ origin: ORIGIN, "x-csrf-token": login.csrf });
      assert.equal(done.status, 204);
      const cleared = done.headers.getSetCookie();
      assert.ok(cleared.some((c) => c.startsWith("__Host-gatehouse_access=;") && c.endsWith("Max-Age=0")));
      assert.ok(cleared.some((c) => c.startsWith("__Secure-gatehouse_refresh=;") && c.endsWith("Max-Age=0")));
      assert.equal((await me(server, login.access)).status, 401);
      assert.equal((await refreshByCookie(server, login.refresh)).status, 400);
    });

    test("a foreign page cannot obtain token cookies (login CSRF)", async () => {
      const user = await createUser(server);
      const response = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: user.password, delivery: "cookie" },
        { key: null, headers: { origin: "https://evil.example" } },
      );
      assert.equal(response.status, 403);
      assert.equal(response.headers.get("set-cookie"), null);
    });
  });
}
