import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, me, startAuthServer, uniqueEmail } from "./support.ts";

for (const backend of backends()) {
  describe(`sign-in with email and password (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        env: { GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "3", GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP: "1000" },
      });
    });
    after(() => server.close());

    test("POST /auth/login answers an RFC 6749 token response; the access token works at /auth/me", async () => {
      const user = await createUser(server, { scopes: ["payments:read", "profile"] });
      const response = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: user.password },
        { key: null },
      );
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("cache-control"), "no-store");
      assert.equal(response.body.token_type, "Bearer");
      assert.equal(response.body.expires_in, 900);
      // `<record id>.<256-bit secret>` (src/tokens/opaque-token.ts).
      assert.match(response.body.refresh_token, /^rtk_[0-9a-f]{12}[0-9A-Za-z]{15}\.[A-Za-z0-9_-]{43}$/);
      assert.equal(response.body.access_token.split(".").length, 3);
      assert.equal(response.body.scope, "payments:read profile");
      const who = await me(server, response.body.access_token);
      assert.equal(who.status, 200);
      assert.deepEqual(
        { sub: who.body.sub, email: who.body.email, by: who.body.authenticatedBy },
        { sub: user.id, email: user.email, by: "bearer" },
      );
    });

    test("the email is matched case-insensitively (normalised)", async () => {
      const user = await createUser(server);
      const tokens = await login(server, { email: `  ${user.email.toUpperCase()} `, password: user.password });
      assert.equal((await me(server, tokens.access_token)).body.sub, user.id);
    });

    test("unknown user, wrong password and disabled user get the same status and body", async () => {
      const user = await createUser(server);
      const disabled = await createUser(server);
      await server.call("POST", `/v1/users/${disabled.id}/disable`);
      const attempts = [
        { email: uniqueEmail("nobody"), password: user.password },
        { email: user.email, password: `${user.password}x` },
        { email: disabled.email, password: disabled.password },
      ];
      const answers = [];
      for (const attempt of attempts) {
        const response = await server.call("POST", "/auth/login", attempt, { key: null });
        answers.push({
          status: response.status,
          code: response.body.code,
          detail: response.body.detail,
          title: response.body.title,
        });
      }
      assert.equal(answers[0]?.status, 401);
      assert.equal(answers[0]?.code, "INVALID_CREDENTIALS");
      assert.deepEqual(answers[1], answers[0]);
      assert.deepEqual(answers[2], answers[0]);
    });

    test("unknown users cost an argon2 verification too (no fast path)", async () => {
      const hasher = (server.gatehouse.users as unknown as { hasher: { burn: (p: string) => Promise<void> } }).hasher;
      let burned = 0;
      const original = hasher.burn.bind(hasher);
      hasher.burn = async (password: string) => {
        burned++;
        return original(password);
      };
      try {
        const response = await server.call(
          "POST",
          "/auth/login",
          { email: uniqueEmail("ghost"), password: "whatever it is" },
          { key: null },
        );
        assert.equal(response.status, 401);
        assert.equal(burned, 1);
      } finally {
        hasher.burn = original;
      }
    });

    test("every attempt is audited with its reason, never with the password", async () => {
      const user = await createUser(server);
      const secret = "my very secret guess 1234";
      await server.call("POST", "/auth/login", { email: user.email, password: secret }, { key: null });
      await login(server, user);
      const events = await auditEvents(server, "action=auth.login&limit=100");
      const mine = events.filter((e) => e.targetId === user.id);
      assert.deepEqual(
        mine.map((e) => `${e.outcome}:${(e.detail as { reason?: string }).reason ?? "-"}`),
        ["success:-", "failure:WRONG_PASSWORD"],
      );
      const everything = JSON.stringify(await auditEvents(server, "limit=100"));
      assert.ok(!everything.includes(secret));
      assert.ok(!everything.includes(user.password));
    });

    test("per-account brake: after the free failures, 429 with Retry-After, growing; no permanent lockout", async () => {
      const user = await createUser(server);
      const wrong = { email: user.email, password: "not the password at all" };
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++)
        statuses.push((await server.call("POST", "/auth/login", wrong, { key: null })).status);
      assert.deepEqual(statuses, [401, 401, 401]);
      // The 4th failure starts a 1 s wait; attempts during the wait get 429 without a password check.
      assert.equal((await server.call("POST", "/auth/login", wrong, { key: null })).status, 401);
      const blocked = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: user.password },
        { key: null },
      );
      assert.equal(blocked.status, 429);
      assert.equal(blocked.body.code, "RATE_LIMITED");
      assert.ok(Number(blocked.headers.get("retry-after")) >= 1);
      // The wait ends by itself, and the right password then works and clears the count.
      await new Promise((resolve) => setTimeout(resolve, 1100));
      const ok = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: user.password },
        { key: null },
      );
      assert.equal(ok.status, 200);
      const events = await auditEvents(server, "action=auth.login&outcome=failure&limit=20");
      assert.ok(events.some((e) => (e.detail as { reason?: string }).reason === "THROTTLED"));
    });

    test("the brake applies to unknown accounts just the same (no existence oracle)", async () => {
      const ghost = { email: uniqueEmail("ghost"), password: "not the password at all" };
      const statuses: number[] = [];
      for (let i = 0; i < 5; i++)
        statuses.push((await server.call("POST", "/auth/login", ghost, { key: null })).status);
      assert.deepEqual(statuses, [401, 401, 401, 401, 429]);
    });

    test("a burst of guesses sent at once is braked as it starts, not after every guess was checked", async () => {
      const user = await createUser(server);
      const wrong = { email: user.email, password: "not the password at all" };
      const statuses = (
        await Promise.all(Array.from({ length: 30 }, () => server.call("POST", "/auth/login", wrong, { key: null })))
      ).map((response) => response.status);
      // 3 free failures and the one that starts the wait are checked; every other guess is
      // refused before its password is (when failures were counted as they ended, all 30 were checked).
      const checked = statuses.filter((status) => status === 401).length;
      assert.ok(checked >= 1 && checked <= 4, `checked ${checked} of 30: ${statuses.join(",")}`);
      assert.equal(statuses.filter((status) => status === 429).length, 30 - checked);
    });

    test("malformed bodies are 400, not a sign-in attempt", async () => {
      const response = await server.call("POST", "/auth/login", { email: "a@b.c" }, { key: null });
      assert.equal(response.status, 400);
      assert.equal(response.body.code, "VALIDATION_FAILED");
    });
  });

  describe(`a full hasher (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      // No waiting at all: whatever finds every hashing slot taken is refused.
      server = await startAuthServer(backend, {
        env: { GATEHOUSE_ARGON2_MAX_WAITING: "0", GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "1" },
      });
    });
    after(() => server.close());

    test("refuses sign-ins past its queue with 503 BUSY and Retry-After, and does not count them as failures", async () => {
      const users: Array<Awaited<ReturnType<typeof createUser>>> = [];
      // One at a time: creating a user hashes a password too.
      for (let i = 0; i < 12; i++) users.push(await createUser(server));
      const answers = await Promise.all(
        users.map((user) =>
          server.call("POST", "/auth/login", { email: user.email, password: user.password }, { key: null }),
        ),
      );
      const busy = answers.filter((answer) => answer.status === 503);
      assert.ok(busy.length > 0, `statuses ${answers.map((answer) => answer.status).join(",")}`);
      assert.ok(answers.every((answer) => answer.status === 200 || answer.status === 503));
      for (const answer of busy) {
        assert.equal(answer.body.code, "BUSY");
        assert.equal(answer.headers.get("retry-after"), "1");
      }
      // Each refused one is an attempt all the same: in the audit log, with its address.
      const refused = (await auditEvents(server, "action=auth.login&outcome=failure&limit=100")).filter(
        (event) => event.detail?.reason === "BUSY",
      );
      assert.equal(refused.length, busy.length);
      for (const event of refused) assert.equal(event.actor, "anonymous");
      // A refused sign-in was never checked: with one free failure per account, two
      // counted failures would brake the next attempt; these go straight through.
      for (const [i, answer] of answers.entries()) {
        if (answer.status !== 503) continue;
        const user = users[i] as (typeof users)[number];
        assert.equal(
          (
            await server.call(
              "POST",
              "/auth/login",
              { email: user.email, password: "wrong password here" },
              { key: null },
            )
          ).status,
          401,
        );
        assert.equal(
          (await server.call("POST", "/auth/login", { email: user.email, password: user.password }, { key: null }))
            .status,
          200,
        );
      }
    });
  });

  describe(`per-address brake (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        env: { GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "100", GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP: "4" },
      });
    });
    after(() => server.close());

    test("spraying many accounts from one address is slowed down, and a success does not reset it", async () => {
      const user = await createUser(server);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        statuses.push(
          (
            await server.call(
              "POST",
              "/auth/login",
              { email: uniqueEmail("spray"), password: "Spring2026!" },
              { key: null },
            )
          ).status,
        );
      }
      await login(server, user);
      statuses.push(
        (
          await server.call(
            "POST",
            "/auth/login",
            { email: uniqueEmail("spray"), password: "Spring2026!" },
            { key: null },
          )
        ).status,
      );
      statuses.push(
        (
          await server.call(
            "POST",
            "/auth/login",
            { email: uniqueEmail("spray"), password: "Spring2026!" },
            { key: null },
          )
        ).status,
      );
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
    });
  });
}
