import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, me, startAuthServer } from "./support.ts";

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
      const refreshed = await server.call(
        "POST",
        "/auth/refresh",
        { refresh_token: tokens.refresh_token },
        { key: null },
      );
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
}
