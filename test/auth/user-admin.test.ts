import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { attemptLogin, auditEvents, createUser, login, me, refresh, startAuthServer } from "./support.ts";

/** The `scope` claim of an access token (its payload read, not verified: the server verified it). */
function scopeOf(accessToken: string): string {
  const payload = accessToken.split(".")[1] ?? "";
  return JSON.parse(Buffer.from(payload, "base64url").toString("utf8")).scope;
}

const ORIGIN = "https://app.example.com";
const UNKNOWN_USER = "usr_0000000000000000000000000000";

for (const backend of backends()) {
  describe(`user admin: enable (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, { env: { GATEHOUSE_ALLOWED_ORIGINS: ORIGIN } });
    });
    after(() => server.close());

    /** A cookie session of the user, as a browser holds it. */
    async function sessionCookie(user: { email: string; password: string }): Promise<string> {
      const response = await server.call(
        "POST",
        "/auth/session",
        { email: user.email, password: user.password },
        { key: null, headers: { origin: ORIGIN } },
      );
      assert.equal(response.status, 204, JSON.stringify(response.body));
      return (response.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    }

    test("enable after disable lets the user sign in again; what the disable ended stays ended", async () => {
      const user = await createUser(server, { scopes: ["payments:read"] });
      const tokens = await login(server, user);
      const cookie = await sessionCookie(user);
      assert.equal((await server.call("POST", `/v1/users/${user.id}/disable`)).status, 200);

      const enabled = await server.call("POST", `/v1/users/${user.id}/enable`);
      assert.equal(enabled.status, 200);
      assert.equal(enabled.body.status, "active");
      assert.equal(enabled.body.disabledAt, null);
      assert.deepEqual(enabled.body.scopes, ["payments:read"]);
      assert.deepEqual((await server.call("GET", `/v1/users/${user.id}`)).body, enabled.body);

      // The access token, refresh token and session from before the disable do not come back.
      assert.equal((await me(server, tokens.access_token)).status, 401);
      const refreshed = await refresh(server, tokens.refresh_token);
      assert.equal(refreshed.status, 400);
      assert.equal(refreshed.body.error, "invalid_grant");
      assert.equal((await server.call("GET", "/auth/me", undefined, { key: null, headers: { cookie } })).status, 401);
      assert.equal((await server.call("GET", `/v1/users/${user.id}/sessions`)).body.data.length, 0);

      // A new sign-in works, by token and by session.
      const fresh = await login(server, user);
      const who = await me(server, fresh.access_token);
      assert.equal(who.status, 200);
      assert.equal(who.body.sub, user.id);
      const newCookie = await sessionCookie(user);
      assert.equal(
        (await server.call("GET", "/auth/me", undefined, { key: null, headers: { cookie: newCookie } })).status,
        200,
      );
    });

    test("enable is idempotent, takes no body, and every call is audited", async () => {
      const user = await createUser(server);
      // An active user: nothing to change, the same answer.
      const untouched = await server.call("POST", `/v1/users/${user.id}/enable`);
      assert.equal(untouched.status, 200);
      assert.equal(untouched.body.status, "active");
      await server.call("POST", `/v1/users/${user.id}/disable`);
      const stray = await server.call("POST", `/v1/users/${user.id}/enable`, { reason: "x" });
      assert.equal(stray.status, 400);
      assert.match(stray.body.detail, /takes no body/);
      assert.equal((await server.call("GET", `/v1/users/${user.id}`)).body.status, "disabled");
      const first = await server.call("POST", `/v1/users/${user.id}/enable`, {});
      const second = await server.call("POST", `/v1/users/${user.id}/enable`);
      assert.equal(first.status, 200);
      assert.deepEqual(second.body, first.body, "a second enable changes nothing, not even updatedAt");

      const events = await auditEvents(server, `action=user.enable&targetId=${user.id}`);
      assert.equal(events.length, 3);
      for (const event of events) {
        assert.equal(event.outcome, "success");
        assert.match(event.actor, /^key:key_/);
      }
    });

    test("enable needs users:write, as disable does; an unknown user is 404", async () => {
      const user = await createUser(server);
      await server.call("POST", `/v1/users/${user.id}/disable`);
      const reader = await server.gatehouse.keys.create(
        { name: "reader", scopes: [], permissions: ["users:read"] },
        { context: CLI_ACTOR, permissions: null },
      );
      const denied = await server.call("POST", `/v1/users/${user.id}/enable`, undefined, { key: reader.key });
      assert.equal(denied.status, 403);
      assert.deepEqual(denied.body.missingPermissions, ["users:write"]);
      assert.equal((await server.call("POST", `/v1/users/${user.id}/enable`, undefined, { key: null })).status, 401);
      assert.equal((await server.call("GET", `/v1/users/${user.id}`)).body.status, "disabled");
      assert.equal((await auditEvents(server, `action=user.enable&targetId=${user.id}`)).length, 0);

      const unknown = await server.call("POST", `/v1/users/${UNKNOWN_USER}/enable`);
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.code, "NOT_FOUND");
      // A deleted user is gone, not disabled: there is nothing to enable.
      await server.call("DELETE", `/v1/users/${user.id}`);
      assert.equal((await server.call("POST", `/v1/users/${user.id}/enable`)).status, 404);
    });
  });

  describe(`user admin: PATCH scopes (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    test("new sign-ins carry the new scopes; a removed scope is gone from the next refresh's token", async () => {
      const user = await createUser(server, { scopes: ["payments:read", "payments:write"] });
      const before = await login(server, user);
      assert.equal(scopeOf(before.access_token), "payments:read payments:write");

      const patched = await server.call("PATCH", `/v1/users/${user.id}`, { scopes: ["payments:read", "reports:read"] });
      assert.equal(patched.status, 200);
      assert.deepEqual(patched.body.scopes, ["payments:read", "reports:read"]);
      assert.notEqual(patched.body.updatedAt, patched.body.createdAt);
      assert.deepEqual((await server.call("GET", `/v1/users/${user.id}`)).body, patched.body);

      // What was issued is left alone: the access token keeps its scope until it expires.
      assert.equal((await me(server, before.access_token)).status, 200);
      assert.equal(scopeOf(before.access_token), "payments:read payments:write");

      // The next refresh of that sign-in issues the scopes the user has now, removal and addition alike.
      const refreshed = await refresh(server, before.refresh_token);
      assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
      assert.equal(scopeOf(refreshed.body.access_token), "payments:read reports:read");
      assert.equal(refreshed.body.scope, "payments:read reports:read");
      const signIns = await server.call("GET", "/auth/sign-ins", undefined, { key: refreshed.body.access_token });
      assert.deepEqual(
        signIns.body.data.map((signIn: { scope: string }) => signIn.scope),
        ["payments:read reports:read"],
      );

      // A new sign-in carries them from the start; none at all is a valid choice too.
      const fresh = await login(server, user);
      assert.equal(scopeOf(fresh.access_token), "payments:read reports:read");
      assert.equal(fresh.scope, "payments:read reports:read");
      assert.equal((await server.call("PATCH", `/v1/users/${user.id}`, { scopes: [] })).status, 200);
      const emptied = await refresh(server, fresh.refresh_token);
      assert.equal(scopeOf(emptied.body.access_token), "");
      assert.deepEqual((await me(server, emptied.body.access_token)).body.scopes, []);
    });

    test("audited with the fields changed and both lists; a PATCH that changes nothing says so", async () => {
      const user = await createUser(server, { scopes: ["a:read"] });
      const created = (await server.call("GET", `/v1/users/${user.id}`)).body;
      const patched = await server.call("PATCH", `/v1/users/${user.id}`, { scopes: ["a:write", "a:read", "a:write"] });
      assert.deepEqual(patched.body.scopes, ["a:write", "a:read"], "duplicates dropped, as at creation");
      const same = await server.call("PATCH", `/v1/users/${user.id}`, { scopes: ["a:write", "a:read"] });
      assert.equal(same.status, 200);
      assert.equal(same.body.updatedAt, patched.body.updatedAt, "nothing changed, nothing moved");
      assert.notEqual(created.updatedAt, patched.body.updatedAt);

      const events = await auditEvents(server, `action=user.update&targetId=${user.id}`);
      assert.equal(events.length, 2);
      const [unchanged, changed] = events; // newest first
      assert.match(changed?.actor ?? "", /^key:key_/);
      assert.equal(changed?.outcome, "success");
      assert.deepEqual(changed?.detail, {
        fields: ["scopes"],
        scopes: { before: ["a:read"], after: ["a:write", "a:read"] },
      });
      assert.deepEqual(unchanged?.detail, {
        fields: [],
        scopes: { before: ["a:write", "a:read"], after: ["a:write", "a:read"] },
      });
    });

    test("a disabled user's scopes can be changed; the sign-in after enabling carries them", async () => {
      const user = await createUser(server, { scopes: ["old"] });
      await server.call("POST", `/v1/users/${user.id}/disable`);
      const patched = await server.call("PATCH", `/v1/users/${user.id}`, { scopes: ["new"] });
      assert.equal(patched.status, 200);
      assert.equal(patched.body.status, "disabled");
      await server.call("POST", `/v1/users/${user.id}/enable`);
      assert.equal(scopeOf((await login(server, user)).access_token), "new");
    });

    test("bad scope names, unknown fields and an empty body are 400 with what is wrong; nothing changes", async () => {
      const user = await createUser(server, { scopes: ["kept"] });
      const refused: Array<[unknown, RegExp]> = [
        [{ scopes: ["has space"] }, /scopes\/0: must be printable ASCII without spaces, quotes or backslashes/],
        [{ scopes: ['quote"d'] }, /scopes\/0: must be printable ASCII/],
        [{ scopes: ["ok", "back\\slash"] }, /scopes\/1: must be printable ASCII/],
        [{ scopes: [""] }, /scopes\/0: must NOT have fewer than 1 characters/],
        [{ scopes: ["x".repeat(129)] }, /scopes\/0: must NOT have more than 128 characters/],
        [{ scopes: Array.from({ length: 65 }, (_, i) => `s${i}`) }, /scopes: must NOT have more than 64 items/],
        [{ scopes: "payments:read" }, /scopes: must be array/],
        [{ scopes: null }, /scopes: must be array/],
        [{ scopes: ["a"], email: "new@example.com" }, /unknown property "email"/],
        [{ status: "active" }, /unknown property "status"/],
        [{}, /body: must have at least one of "scopes"/],
        [[], /body: must be a JSON object with at least one of "scopes"/],
      ];
      for (const [body, detail] of refused) {
        const response = await server.call("PATCH", `/v1/users/${user.id}`, body);
        assert.equal(response.status, 400, JSON.stringify(body));
        assert.equal(response.body.code, "VALIDATION_FAILED", JSON.stringify(body));
        assert.match(response.body.detail, detail, JSON.stringify(body));
      }
      // The same rule and wording as at creation.
      const atCreation = await server.call("POST", "/v1/users", {
        email: user.email,
        password: user.password,
        scopes: ["has space"],
      });
      assert.equal(atCreation.status, 400);
      assert.match(atCreation.body.detail, /scopes\/0: must be printable ASCII without spaces, quotes or backslashes/);
      const none = await server.call("PATCH", `/v1/users/${user.id}`);
      assert.equal(none.status, 400);
      assert.match(none.body.detail, /body: must be a JSON object with at least one of "scopes"/);
      assert.deepEqual((await server.call("GET", `/v1/users/${user.id}`)).body.scopes, ["kept"]);
      assert.equal((await auditEvents(server, `action=user.update&targetId=${user.id}`)).length, 0);
    });

    test("PATCH needs users:write; an unknown or deleted user is 404", async () => {
      const user = await createUser(server, { scopes: ["kept"] });
      const reader = await server.gatehouse.keys.create(
        { name: "reader", scopes: [], permissions: ["users:read"] },
        { context: CLI_ACTOR, permissions: null },
      );
      const denied = await server.call("PATCH", `/v1/users/${user.id}`, { scopes: [] }, { key: reader.key });
      assert.equal(denied.status, 403);
      assert.deepEqual(denied.body.missingPermissions, ["users:write"]);
      assert.deepEqual((await server.call("GET", `/v1/users/${user.id}`)).body.scopes, ["kept"]);

      const unknown = await server.call("PATCH", `/v1/users/${UNKNOWN_USER}`, { scopes: [] });
      assert.equal(unknown.status, 404);
      assert.equal(unknown.body.code, "NOT_FOUND");
      await server.call("DELETE", `/v1/users/${user.id}`);
      assert.equal((await server.call("PATCH", `/v1/users/${user.id}`, { scopes: [] })).status, 404);
    });
  });

  describe(`user admin: set a password (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    const NEW_PASSWORD = "a new passphrase nobody else has seen 7";

    test("the new password signs in, the old one does not, and every sign-in of the user ends", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const second = await login(server, user);
      const set = await server.call("POST", `/v1/users/${user.id}/password`, { password: NEW_PASSWORD });
      assert.equal(set.status, 204, JSON.stringify(set.body));

      const old = await attemptLogin(server, user);
      assert.equal(old.status, 401);
      const fresh = await login(server, { email: user.email, password: NEW_PASSWORD });
      assert.equal((await me(server, fresh.access_token)).status, 200);
      // Whoever knew the old password is out: no sign-in of before survives, unlike a
      // change by the user, which keeps the sign-in that made it.
      for (const tokens of [first, second]) {
        assert.equal((await me(server, tokens.access_token)).status, 401);
        const refreshed = await refresh(server, tokens.refresh_token);
        assert.equal(refreshed.status, 400);
        assert.equal(refreshed.body.error, "invalid_grant");
      }
      const events = await auditEvents(server, `action=user.password_set&targetId=${user.id}`);
      assert.equal(events.length, 1);
      assert.match(events[0]?.actor ?? "", /^key:key_/);
      assert.ok(!JSON.stringify(events).includes(NEW_PASSWORD), "the audit event holds no password");
    });

    test("a disabled user's password can be set before enabling, so the old one never works again", async () => {
      const user = await createUser(server);
      await server.call("POST", `/v1/users/${user.id}/disable`);
      assert.equal(
        (await server.call("POST", `/v1/users/${user.id}/password`, { password: NEW_PASSWORD })).status,
        204,
      );
      assert.equal((await server.call("GET", `/v1/users/${user.id}`)).body.status, "disabled");
      await server.call("POST", `/v1/users/${user.id}/enable`);
      const old = await attemptLogin(server, user);
      assert.equal(old.status, 401);
      assert.equal((await login(server, { email: user.email, password: NEW_PASSWORD })).token_type, "Bearer");
    });

    test("the password policy applies; users:write is needed; an unknown user is 404; nothing changes on refusal", async () => {
      const user = await createUser(server);
      const weak = await server.call("POST", `/v1/users/${user.id}/password`, { password: "password" });
      assert.equal(weak.status, 400);
      assert.equal(weak.body.code, "PASSWORD_REJECTED");
      // Refused, and audited as the admin action it was (never the password).
      const refusedSet = await auditEvents(server, `action=user.password_set&outcome=failure&targetId=${user.id}`);
      assert.equal(refusedSet.length, 1);
      assert.deepEqual(refusedSet[0]?.detail, { reason: "PASSWORD_REJECTED", policy: "TOO_COMMON" });
      const extra = await server.call("POST", `/v1/users/${user.id}/password`, { password: NEW_PASSWORD, x: 1 });
      assert.equal(extra.status, 400);
      const reader = await server.gatehouse.keys.create(
        { name: "reader", scopes: [], permissions: ["users:read"] },
        { context: CLI_ACTOR, permissions: null },
      );
      const denied = await server.call(
        "POST",
        `/v1/users/${user.id}/password`,
        { password: NEW_PASSWORD },
        { key: reader.key },
      );
      assert.equal(denied.status, 403);
      assert.deepEqual(denied.body.missingPermissions, ["users:write"]);
      // The refusal names the account whose password was to be set, so a search by user finds it.
      const refused = await auditEvents(server, `action=auth.permission&targetId=${user.id}`);
      assert.equal(refused.length, 1);
      assert.equal(refused[0]?.actor, `key:${reader.record.id}`);
      assert.deepEqual(refused[0]?.detail, { missing: ["users:write"], route: "/v1/users/:id/password" });
      assert.ok(!JSON.stringify(refused).includes(NEW_PASSWORD));
      const unknown = await server.call("POST", `/v1/users/${UNKNOWN_USER}/password`, { password: NEW_PASSWORD });
      assert.equal(unknown.status, 404);
      // The user's own password still works: none of the refusals changed it.
      assert.equal((await login(server, user)).token_type, "Bearer");
      assert.equal(
        (await auditEvents(server, `action=user.password_set&outcome=success&targetId=${user.id}`)).length,
        0,
      );
    });
  });
}
