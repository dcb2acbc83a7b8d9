import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { manualClock } from "../../src/lib/clock.ts";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, me, refresh, startAuthServer } from "./support.ts";

const ORIGIN = "https://app.example.com";

interface Browser {
  cookie: string;
  csrf: string;
}

async function signIn(
  server: TestServer,
  user: { email: string; password: string },
  options: { cookie?: string } = {},
): Promise<Browser & { setCookie: string }> {
  const response = await server.call(
    "POST",
    "/auth/session",
    { email: user.email, password: user.password },
    { key: null, headers: { origin: ORIGIN, ...(options.cookie ? { cookie: options.cookie } : {}) } },
  );
  assert.equal(response.status, 204, JSON.stringify(response.body));
  const setCookie = response.headers.get("set-cookie") ?? "";
  const cookie = setCookie.split(";")[0] ?? "";
  return { cookie, csrf: response.headers.get("x-csrf-token") ?? "", setCookie };
}

/** A request as a browser on our origin would send it, cookie attached. */
function browserCall(
  server: TestServer,
  method: string,
  path: string,
  browser: Browser,
  options: { origin?: string | null; csrf?: string | null; body?: unknown } = {},
) {
  const headers: Record<string, string> = { cookie: browser.cookie };
  const origin = options.origin === undefined ? ORIGIN : options.origin;
  if (origin !== null) headers.origin = origin;
  const csrf = options.csrf === undefined ? browser.csrf : options.csrf;
  if (csrf !== null) headers["x-csrf-token"] = csrf;
  return server.call(method, path, options.body, { key: null, headers });
}

for (const backend of backends()) {
  describe(`cookie sessions (${backend.name})`, () => {
    const clock = manualClock(Date.now());
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        clock,
        env: {
          GATEHOUSE_ALLOWED_ORIGINS: ORIGIN,
          GATEHOUSE_SESSION_SECONDS: "43200",
          GATEHOUSE_SESSION_IDLE_SECONDS: "1800",
        },
      });
    });
    after(() => server.close());

    test("POST /auth/session sets a __Host- cookie: HttpOnly, Secure, SameSite=Lax, Path=/, no Domain", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      const attributes = browser.setCookie.split(";").map((a) => a.trim());
      assert.match(attributes[0] ?? "", /^__Host-gatehouse_session=[A-Za-z0-9_-]{43}$/);
      for (const attribute of ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"])
        assert.ok(attributes.includes(attribute), attribute);
      assert.ok(!attributes.some((a) => a.toLowerCase().startsWith("domain")));
      assert.match(browser.csrf, /^[A-Za-z0-9_-]{43}$/);
      const who = await browserCall(server, "GET", "/auth/me", browser);
      assert.equal(who.status, 200);
      assert.equal(who.body.authenticatedBy, "session");
      assert.equal(who.body.sub, user.id);
      const session = await browserCall(server, "GET", "/auth/session", browser);
      assert.equal(session.body.csrfToken, browser.csrf);
      assert.equal(session.body.current, true);
    });

    test("the session id is stored hashed", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      const value = browser.cookie.split("=")[1] ?? "";
      const { digestOpaqueToken } = await import("../../src/tokens/opaque-token.ts");
      const record = await server.gatehouse.storage.sessions.findByDigest(digestOpaqueToken(value));
      assert.equal(record?.userId, user.id);
      assert.ok(!JSON.stringify(record).includes(value));
    });

    test("signing in again renews the id and ends the one presented (no fixation)", async () => {
      const user = await createUser(server);
      const first = await signIn(server, user);
      const second = await signIn(server, user, { cookie: first.cookie });
      assert.notEqual(second.cookie, first.cookie);
      assert.equal((await browserCall(server, "GET", "/auth/me", first)).status, 401);
      assert.equal((await browserCall(server, "GET", "/auth/me", second)).status, 200);
    });

    test("CSRF: cookie-authenticated changes need an allowed Origin and the token", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      // Each refusal says which part failed.
      const noToken = /need the X-CSRF-Token header with the token given at sign-in/;
      const noOrigin = /need an Origin \(or Referer\) header from an allowed origin; none was sent/;
      const attempts = [
        { origin: ORIGIN, csrf: null, detail: noToken },
        { origin: ORIGIN, csrf: "A".repeat(43), detail: /X-CSRF-Token header does not match this session's token/ },
        // As long as a token in characters, longer in bytes: a mismatch, not a 500.
        { origin: ORIGIN, csrf: "é".repeat(43), detail: /X-CSRF-Token header does not match this session's token/ },
        {
          origin: "https://evil.example",
          csrf: browser.csrf,
          detail: /origin "https:\/\/evil.example" are not allowed/,
        },
        { origin: null, csrf: browser.csrf, detail: noOrigin },
        { origin: "null", csrf: browser.csrf, detail: noOrigin },
      ];
      for (const { detail, ...attempt } of attempts) {
        const response = await browserCall(server, "DELETE", "/auth/session", browser, attempt);
        assert.equal(response.status, 403, JSON.stringify(attempt));
        assert.equal(response.body.code, "CSRF_FAILED");
        assert.match(response.body.detail, detail, JSON.stringify(attempt));
      }
      // The audit log says which part failed, too.
      const refusals = await auditEvents(server, "action=auth.csrf&limit=100");
      const reasons = new Set(refusals.map((e) => (e.detail as { reason?: string } | null)?.reason));
      for (const reason of ["token_missing", "token_mismatch", "origin_not_allowed", "origin_missing"]) {
        assert.ok(reasons.has(reason), reason);
      }
      // Still signed in: none of those did anything.
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200);
      // Reading needs no CSRF token (GET changes nothing).
      assert.equal(
        (await browserCall(server, "GET", "/auth/session", browser, { origin: null, csrf: null })).status,
        200,
      );
      // A Referer from our origin stands in for a missing Origin (some browsers omit it).
      const out = await server.call("DELETE", "/auth/session", undefined, {
        key: null,
        headers: { cookie: browser.cookie, referer: `${ORIGIN}/settings?tab=security`, "x-csrf-token": browser.csrf },
      });
      assert.equal(out.status, 204);
      assert.match(out.headers.get("set-cookie") ?? "", /^__Host-gatehouse_session=; .*Max-Age=0/);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 401);
      const events = await auditEvents(server, "action=auth.csrf");
      assert.ok(events.length >= 5);
    });

    test("a foreign page cannot sign a browser in (login CSRF)", async () => {
      const user = await createUser(server);
      const response = await server.call(
        "POST",
        "/auth/session",
        { email: user.email, password: user.password },
        { key: null, headers: { origin: "https://evil.example" } },
      );
      assert.equal(response.status, 403);
      assert.equal(response.headers.get("set-cookie"), null);
      // A sign-in has no cookie or token yet: the answer is about the origin alone.
      assert.equal(
        response.body.detail,
        'Requests from the origin "https://evil.example" are not allowed here (GATEHOUSE_ALLOWED_ORIGINS lists the allowed ones).',
      );
      // Refused and recorded, as any other failed cross-site check.
      await server.gatehouse.audit.flush();
      const audit = await server.call("GET", "/v1/audit?action=auth.csrf&limit=100");
      assert.ok(
        audit.body.data.some(
          (e: { detail: { origin?: string; route?: string } }) =>
            e.detail.origin === "https://evil.example" && e.detail.route === "/auth/session",
        ),
      );
    });

    test("idle timeout: 30 minutes without use ends the session; use keeps it alive", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      clock.advance(20 * 60_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200);
      clock.advance(20 * 60_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200, "touched 20 minutes ago");
      clock.advance(31 * 60_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 401);
    });

    test("absolute timeout: 12 hours, however active", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      for (let i = 0; i < 24; i++) {
        clock.advance(29 * 60_000);
        assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200, `step ${i}`);
      }
      // 696 minutes in; 20 more is still inside 12 hours, 10 after that is not (idle only 10).
      clock.advance(20 * 60_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200);
      clock.advance(10 * 60_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 401);
    });

    test("users list their sessions and end one; admins end them all", async () => {
      const user = await createUser(server);
      const laptop = await signIn(server, user);
      const phone = await signIn(server, user);
      const tokens = await login(server, user);
      const listed = await browserCall(server, "GET", "/auth/sessions", laptop);
      assert.equal(listed.status, 200);
      assert.equal(listed.body.data.length, 2);
      const phoneEntry = listed.body.data.find((s: { current: boolean }) => !s.current);
      assert.ok(phoneEntry);
      // Ending a session by id is a change: CSRF applies.
      assert.equal(
        (await browserCall(server, "DELETE", `/auth/sessions/${phoneEntry.id}`, laptop, { csrf: null })).status,
        403,
      );
      assert.equal((await browserCall(server, "DELETE", `/auth/sessions/${phoneEntry.id}`, laptop)).status, 204);
      assert.equal((await browserCall(server, "GET", "/auth/me", phone)).status, 401);
      // Another user's session id is not found, not ended.
      const stranger = await signIn(server, await createUser(server));
      const strangerId = (await browserCall(server, "GET", "/auth/session", stranger)).body.id;
      assert.equal((await browserCall(server, "DELETE", `/auth/sessions/${strangerId}`, laptop)).status, 404);
      assert.equal((await browserCall(server, "GET", "/auth/me", stranger)).status, 200);

      const adminView = await server.call("GET", `/v1/users/${user.id}/sessions`);
      assert.equal(adminView.body.data.length, 1);
      const ended = await server.call("DELETE", `/v1/users/${user.id}/sessions`);
      assert.equal(ended.status, 200);
      assert.equal(ended.body.endedSessions, 1);
      assert.equal((await browserCall(server, "GET", "/auth/me", laptop)).status, 401);
      const refreshed = await refresh(server, tokens.refresh_token);
      assert.equal(refreshed.status, 400, "refresh tokens end with the sessions");
      assert.equal((await me(server, tokens.access_token)).status, 401);
    });

    test("password change needs the current password and ends the other sessions and refresh tokens", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      const mine = await login(server, user);
      const elsewhere = await login(server, user);
      const change = (current: string, next: string) =>
        server.call(
          "POST",
          "/auth/password",
          { currentPassword: current, newPassword: next },
          { key: mine.access_token },
        );
      const wrong = await change("not my password at all", "a brand new passphrase");
      assert.equal(wrong.status, 401);
      assert.equal(wrong.body.code, "INVALID_CREDENTIALS");
      const failures = await auditEvents(server, `action=user.password_change&outcome=failure&targetId=${user.id}`);
      assert.equal(failures.length, 1);
      const weak = await change(user.password, "password1");
      assert.equal(weak.status, 400);
      assert.equal(weak.body.code, "PASSWORD_REJECTED");
      const refused = await auditEvents(server, `action=user.password_change&outcome=failure&targetId=${user.id}`);
      assert.deepEqual(
        refused.map((event) => event.detail),
        [{ reason: "PASSWORD_REJECTED", policy: "TOO_COMMON" }, { reason: "WRONG_PASSWORD" }],
      );
      const ok = await change(user.password, "a brand new passphrase");
      assert.equal(ok.status, 204);
      // Everything else is signed out; the caller's own sign-in goes on.
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 401);
      assert.equal((await me(server, elsewhere.access_token)).status, 401);
      assert.equal((await refresh(server, elsewhere.refresh_token)).status, 400);
      assert.equal((await me(server, mine.access_token)).status, 200);
      assert.equal((await refresh(server, mine.refresh_token)).status, 200);
      assert.equal(
        (await server.call("POST", "/auth/login", { email: user.email, password: user.password }, { key: null }))
          .status,
        401,
      );
      await login(server, { email: user.email, password: "a brand new passphrase" });
    });

    test("password change from a cookie session: CSRF applies and the current session survives", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      const other = await signIn(server, user);
      const body = { currentPassword: user.password, newPassword: "yet another fine passphrase" };
      assert.equal((await browserCall(server, "POST", "/auth/password", browser, { body, csrf: null })).status, 403);
      assert.equal((await browserCall(server, "POST", "/auth/password", browser, { body })).status, 204);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200);
      assert.equal((await browserCall(server, "GET", "/auth/me", other)).status, 401);
    });
  });

  describe(`cookie sessions with the shortest idle timeout (${backend.name})`, () => {
    const clock = manualClock(Date.now());
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        clock,
        env: { GATEHOUSE_ALLOWED_ORIGINS: ORIGIN, GATEHOUSE_SESSION_IDLE_SECONDS: "60" },
      });
    });
    after(() => server.close());

    test("a session used every 10 seconds never idles out; 61 seconds without use ends it", async () => {
      const user = await createUser(server);
      const browser = await signIn(server, user);
      // Use was once recorded at most every 60 s, so with a 60 s idle limit a busy
      // session expired between two records.
      for (let second = 10; second <= 180; second += 10) {
        clock.advance(10_000);
        assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 200, `at ${second} s`);
      }
      clock.advance(61_000);
      assert.equal((await browserCall(server, "GET", "/auth/me", browser)).status, 401);
    });
  });
}
