import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { hash, parseOptions } from "@node-rs/argon2";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { backends } from "../support/backends.ts";
import { userRecord } from "../support/records.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, refresh, STRONG_PASSWORD, startAuthServer, uniqueEmail } from "./support.ts";

for (const backend of backends()) {
  describe(`users admin API (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, { env: { GATEHOUSE_ARGON2_TIME_COST: "3" } });
    });
    after(() => server.close());

    test("create answers 201 with the user, never the password or its hash; get and list", async () => {
      const email = uniqueEmail("Ada");
      const created = await server.call("POST", "/v1/users", { email, password: STRONG_PASSWORD, scopes: ["a"] });
      assert.equal(created.status, 201);
      assert.match(created.body.id, /^usr_/);
      assert.equal(created.headers.get("location"), `/v1/users/${created.body.id}`);
      assert.equal(created.body.email, email.toLowerCase());
      assert.equal(created.body.status, "active");
      const text = JSON.stringify(created.body);
      assert.ok(!text.includes(STRONG_PASSWORD) && !text.includes("argon2"));
      const read = await server.call("GET", `/v1/users/${created.body.id}`);
      assert.deepEqual(read.body, created.body);
      const stored = await server.gatehouse.storage.users.findById(created.body.id);
      assert.equal(parseOptions(stored?.passwordHash ?? "").memoryCost, 19456);
      assert.match(stored?.passwordHash ?? "", /^\$argon2id\$v=19\$m=19456,t=3,p=1\$/);
      const events = await auditEvents(server, `action=user.create&targetId=${created.body.id}`);
      assert.equal(events.length, 1);
    });

    test("list is paginated newest first", async () => {
      const ids = [];
      for (let i = 0; i < 3; i++) ids.push((await createUser(server)).id);
      const first = await server.call("GET", "/v1/users?limit=2");
      assert.deepEqual(
        first.body.data.map((u: { id: string }) => u.id),
        [ids[2], ids[1]],
      );
      const second = await server.call("GET", `/v1/users?limit=1&cursor=${first.body.nextCursor}`);
      assert.deepEqual(
        second.body.data.map((u: { id: string }) => u.id),
        [ids[0]],
      );
    });

    test("a taken email is 409; a malformed one 400", async () => {
      const user = await createUser(server);
      const again = await server.call("POST", "/v1/users", {
        email: user.email.toUpperCase(),
        password: STRONG_PASSWORD,
      });
      assert.equal(again.status, 409);
      const bad = await server.call("POST", "/v1/users", { email: "not-an-email", password: STRONG_PASSWORD });
      assert.equal(bad.status, 400);
      // Invisible characters would make a second account that looks like the first.
      const [local, domain] = user.email.split("@") as [string, string];
      for (const lookalike of [
        `${user.email}\u200b`,
        `${local}\u200d@${domain}`,
        `${local}@\u202e${domain}`,
        `${local}\ud800@${domain}`,
        `${local}\ue000@${domain}`,
      ]) {
        const refused = await server.call("POST", "/v1/users", { email: lookalike, password: STRONG_PASSWORD });
        assert.equal(refused.status, 400, JSON.stringify(lookalike));
        assert.match(refused.body.detail, /invisible character|private-use/, JSON.stringify(lookalike));
      }
      // The same mailbox by its fully qualified domain (a trailing dot): not a second account.
      const rooted = await server.call("POST", "/v1/users", { email: `${user.email}.`, password: STRONG_PASSWORD });
      assert.equal(rooted.status, 400);
      assert.match(rooted.body.detail, /empty label/);
    });

    test("users:read and users:write are needed; other admin permissions do not do", async () => {
      const reader = await server.gatehouse.keys.create(
        { name: "r", scopes: [], permissions: ["users:read"] },
        { context: CLI_ACTOR, permissions: null },
      );
      const keysOnly = await server.gatehouse.keys.create(
        { name: "k", scopes: [], permissions: ["keys:write", "keys:read"] },
        { context: CLI_ACTOR, permissions: null },
      );
      assert.equal((await server.call("GET", "/v1/users", undefined, { key: reader.key })).status, 200);
      const denied = await server.call(
        "POST",
        "/v1/users",
        { email: uniqueEmail(), password: STRONG_PASSWORD },
        { key: reader.key },
      );
      assert.equal(denied.status, 403);
      assert.deepEqual(denied.body.missingPermissions, ["users:write"]);
      assert.equal((await server.call("GET", "/v1/users", undefined, { key: keysOnly.key })).status, 403);
      assert.equal((await server.call("GET", "/v1/users", undefined, { key: null })).status, 401);
    });

    test("password policy: common and guessable passwords refused with a reason, no composition rules", async () => {
      const email = uniqueEmail("policy");
      const refused: Array<[string, string]> = [
        ["short1!", "TOO_SHORT"],
        ["password", "TOO_COMMON"],
        ["Password123!", "TOO_COMMON"],
        ["qwertyuiop", "TOO_COMMON"],
        ["iloveyou2", "TOO_COMMON"],
        [`${email.split("@")[0]}`, "TOO_COMMON"],
        ["x".repeat(1025), "TOO_LONG"],
        // A common password padded or spaced out is still the common password.
        [" password ", "TOO_COMMON"],
        ["  qwerty123  ", "TOO_COMMON"],
        ["_iloveyou_", "TOO_COMMON"],
        ["-sunshine-", "TOO_COMMON"],
        ["\u0000football\u0000", "TOO_COMMON"],
        ["p a s s w o r d", "TOO_COMMON"],
      ];
      for (const [password, reason] of refused) {
        const response = await server.call("POST", "/v1/users", { email, password });
        assert.equal(response.status, 400, password);
        assert.equal(response.body.code, "PASSWORD_REJECTED", password);
        assert.equal(response.body.reason, reason, password);
      }
      // All lower case, no digits, no symbols: fine, because it is long and not guessable.
      await createUser(server, { password: "marble kettle dawn orbit" });
      // Very long passphrases are welcome.
      await createUser(server, { password: "the quick brown fox jumps over the lazy dog ".repeat(20).trim() });
      // Any Unicode, including emoji and non-Latin scripts.
      await createUser(server, { password: "Ünïcødé пароль 密码 🦊🔑" });
    });

    test("no truncation: a long password does not match its first 72 bytes (the bcrypt trap)", async () => {
      const password = `${"correct horse battery staple ".repeat(3)}and the last words matter`;
      const user = await createUser(server, { password });
      const truncated = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: password.slice(0, 72) },
        { key: null },
      );
      assert.equal(truncated.status, 401);
      await login(server, user);
    });

    test("passwords are compared after NFKC normalisation (NIST 800-63B §5.1.1.2)", async () => {
      const user = await createUser(server, { password: "Ｔｒｏｍｂｏｎｅ ｍａｎｇｏ ｈａｒｂｏｕｒ" });
      await login(server, { email: user.email, password: "Trombone mango harbour" });
    });

    test("sign-in rehashes a hash made with outdated parameters", async () => {
      const email = uniqueEmail("legacy");
      const old = await hash("legacy passphrase, old params", {
        algorithm: 2,
        memoryCost: 19456,
        timeCost: 2,
        parallelism: 1,
      });
      const now = Date.now();
      await server.gatehouse.storage.users.insert(
        userRecord(`usr_${now.toString(16).padStart(12, "0")}legacyuser00001`, now, { email, passwordHash: old }),
        null,
      );
      await login(server, { email, password: "legacy passphrase, old params" });
      const stored = await server.gatehouse.storage.users.findByEmail(email);
      assert.notEqual(stored?.passwordHash, old);
      assert.equal(parseOptions(stored?.passwordHash ?? "").timeCost, 3);
      await login(server, { email, password: "legacy passphrase, old params" });
    });

    test("a password with a lone surrogate is refused (hashed as UTF-8 it would equal other spellings)", async () => {
      const refused = await server.call("POST", "/v1/users", {
        email: uniqueEmail(),
        password: `${STRONG_PASSWORD}\ud800\udbff`,
      });
      assert.equal(refused.status, 400);
      assert.equal(refused.body.reason, "NOT_TEXT");
    });

    test("a user deleted while signing in: the sign-in fails as for an unknown account, never a 500", async () => {
      // Each sign-in hashes for tens of milliseconds; the delete lands during some of them.
      const user = await createUser(server);
      const credentials = { email: user.email, password: user.password };
      const attempts = [
        ...Array.from({ length: 5 }, () => server.call("POST", "/auth/login", credentials, { key: null })),
        ...Array.from({ length: 5 }, () => server.call("POST", "/auth/session", credentials, { key: null })),
      ];
      await new Promise((resolve) => setTimeout(resolve, 10));
      assert.equal((await server.call("DELETE", `/v1/users/${user.id}`)).status, 204);
      const statuses = (await Promise.all(attempts)).map((answer) => answer.status);
      // 429: attempts sent together past the account's free failures wait for the first to be judged.
      for (const status of statuses) assert.ok([200, 204, 401, 429].includes(status), `status ${status}`);
      await server.gatehouse.audit.flush();
      const successes = await auditEvents(server, `action=auth.login&outcome=success&targetId=${user.id}`);
      assert.equal(
        successes.length,
        statuses.filter((status) => status === 200 || status === 204).length,
        "a success per sign-in issued",
      );
    });

    test("disable: sign-in refused, idempotent; delete: gone, with its tokens", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      // It takes no fields: one sent is refused before anything changes.
      const stray = await server.call("POST", `/v1/users/${user.id}/disable`, { reason: "x" });
      assert.equal(stray.status, 400);
      assert.equal((await server.call("GET", `/v1/users/${user.id}`)).body.status, "active");
      const disabled = await server.call("POST", `/v1/users/${user.id}/disable`);
      assert.equal(disabled.status, 200);
      assert.equal(disabled.body.status, "disabled");
      assert.ok(disabled.body.disabledAt);
      const again = await server.call("POST", `/v1/users/${user.id}/disable`);
      assert.equal(again.body.disabledAt, disabled.body.disabledAt);
      assert.equal(
        (await server.call("POST", "/auth/login", { email: user.email, password: user.password }, { key: null }))
          .status,
        401,
      );

      const deleted = await server.call("DELETE", `/v1/users/${user.id}`);
      assert.equal(deleted.status, 204);
      assert.equal((await server.call("GET", `/v1/users/${user.id}`)).status, 404);
      assert.equal((await server.call("DELETE", `/v1/users/${user.id}`)).status, 404);
      const refreshed = await refresh(server, tokens.refresh_token);
      assert.equal(refreshed.status, 400);
      // The email can be used again.
      await createUser(server, { email: user.email });
    });

    test("public sign-up is off by default", async () => {
      const response = await server.call(
        "POST",
        "/auth/signup",
        { email: uniqueEmail(), password: STRONG_PASSWORD },
        { key: null },
      );
      assert.equal(response.status, 404);
    });
  });

  describe(`public sign-up and a stricter minimum length (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        env: { GATEHOUSE_SIGNUP_ENABLED: "true", GATEHOUSE_PASSWORD_MIN_LENGTH: "12" },
      });
    });
    after(() => server.close());

    test("sign-up answers the same whether or not the email is taken, and never changes an existing account", async () => {
      const email = uniqueEmail("signup");
      const first = await server.call("POST", "/auth/signup", { email, password: STRONG_PASSWORD }, { key: null });
      assert.equal(first.status, 202);
      const second = await server.call(
        "POST",
        "/auth/signup",
        { email, password: "another long passphrase here" },
        { key: null },
      );
      assert.equal(second.status, 202);
      assert.deepEqual(second.body, first.body);
      await login(server, { email, password: STRONG_PASSWORD });
      const refused = await server.call(
        "POST",
        "/auth/login",
        { email, password: "another long passphrase here" },
        { key: null },
      );
      assert.equal(refused.status, 401);
      const failures = await auditEvents(server, "action=user.signup&outcome=failure");
      assert.equal(failures.length, 1);
      assert.equal(failures[0]?.detail?.reason, "EMAIL_TAKEN");
    });

    test("the configured minimum applies (12), and weak passwords are refused at sign-up too", async () => {
      const short = await server.call(
        "POST",
        "/auth/signup",
        { email: uniqueEmail(), password: "vX9#qL2!mZ" },
        { key: null },
      );
      assert.equal(short.status, 400);
      assert.equal(short.body.reason, "TOO_SHORT");
      assert.match(short.body.detail, /12 characters/);
      const common = await server.call(
        "POST",
        "/auth/signup",
        { email: uniqueEmail(), password: "password1234" },
        { key: null },
      );
      assert.equal(common.body.reason, "TOO_COMMON");
    });

    test("minimum length can only be raised, never below NIST's 8", () => {
      return import("../../src/config/config.ts").then(({ loadConfig, ConfigError }) => {
        assert.throws(() => loadConfig({ GATEHOUSE_PASSWORD_MIN_LENGTH: "6" }), ConfigError);
        assert.throws(() => loadConfig({ GATEHOUSE_ARGON2_MEMORY_KIB: "4096" }), ConfigError);
        assert.throws(() => loadConfig({ GATEHOUSE_ARGON2_TIME_COST: "1" }), ConfigError);
      });
    });
  });
  describe(`sign-up limit per sender behind a proxy (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        env: { GATEHOUSE_SIGNUP_ENABLED: "true", GATEHOUSE_TRUSTED_PROXIES: "127.0.0.1" },
      });
    });
    after(() => server.close());

    test("an IPv6 sender's ten sign-ups an hour are its /64's, not each address's", async () => {
      const signUp = (ip: string) =>
        server.call(
          "POST",
          "/auth/signup",
          { email: uniqueEmail("signup6"), password: STRONG_PASSWORD },
          { key: null, headers: { "x-forwarded-for": ip } },
        );
      for (let i = 1; i <= 10; i++) assert.equal((await signUp(`2001:db8:5:1::${i}`)).status, 202, `sign-up ${i}`);
      const eleventh = await signUp("2001:db8:5:1::11");
      assert.equal(eleventh.status, 429);
      assert.equal(eleventh.body.limitedBy, "sign-up");
      assert.equal((await signUp("2001:db8:5:2::1")).status, 202);
    });
  });
}
