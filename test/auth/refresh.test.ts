import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { manualClock } from "../../src/lib/clock.ts";
import { refreshTokenRef } from "../../src/tokens/opaque-token.ts";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, me, startAuthServer } from "./support.ts";

const refresh = (server: TestServer, token: string) =>
  server.call("POST", "/auth/refresh", { refresh_token: token }, { key: null });
/** Logout with a refresh token in the body, and an access token (or none) in the header. */
const logoutWith = (server: TestServer, refreshToken: string, accessToken: string | null) =>
  server.call("POST", "/auth/logout", { refresh_token: refreshToken }, { key: accessToken });

for (const backend of backends()) {
  describe(`refresh token rotation and logout (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    test("a refresh token is stored hashed, never as itself", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const reference = refreshTokenRef(tokens.refresh_token);
      assert.ok(reference?.id, "the token names its record");
      const record = await server.gatehouse.storage.tokens.findRefresh(reference);
      assert.ok(record);
      assert.equal(record.userId, user.id);
      // Only the id part of the token (not secret) is stored as itself; the secret only as its digest.
      const secret = tokens.refresh_token.split(".")[1] as string;
      assert.equal(secret.length, 43);
      assert.ok(!JSON.stringify(record).includes(secret));
      assert.ok(!JSON.stringify(record).includes(tokens.refresh_token));
    });

    test("refresh rotates on every use: new pair, old refresh token spent", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const second = await refresh(server, first.refresh_token);
      assert.equal(second.status, 200);
      assert.equal(second.headers.get("cache-control"), "no-store");
      assert.notEqual(second.body.refresh_token, first.refresh_token);
      assert.notEqual(second.body.access_token, first.access_token);
      assert.equal((await me(server, second.body.access_token)).status, 200);
      const third = await refresh(server, second.body.refresh_token);
      assert.equal(third.status, 200);
    });

    test("reuse of a rotated token revokes the whole family and is audited as probable theft", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const second = (await refresh(server, first.refresh_token)).body;
      // The attacker (or the victim) presents the spent token again.
      const replay = await refresh(server, first.refresh_token);
      assert.equal(replay.status, 400);
      assert.equal(replay.body.code, "INVALID_GRANT");
      assert.equal(replay.body.error, "invalid_grant");
      // The legitimate holder's newer token is dead too, and so is its access token at /auth/me.
      assert.equal((await refresh(server, second.refresh_token)).status, 400);
      assert.equal((await me(server, second.access_token)).status, 401);
      const events = await auditEvents(server, `action=token.refresh_reuse&targetId=${user.id}`);
      assert.equal(events.length, 1);
      assert.equal(events[0]?.detail?.probableTheft, true);
    });

    test("concurrent refreshes of one token: exactly one wins", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const answers = await Promise.all(Array.from({ length: 40 }, () => refresh(server, tokens.refresh_token)));
      const statuses = answers.map((a) => a.status);
      assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses: ${statuses.join(",")}`);
      assert.equal(statuses.filter((s) => s === 400).length, 39);
      // The losers presented a spent token: the family is revoked (RFC 9700 §4.14.2), so the
      // winner's new token is refused as well. A client must not refresh one token twice.
      const winner = answers.find((a) => a.status === 200);
      assert.ok(winner);
      assert.equal((await refresh(server, winner.body.refresh_token)).status, 400);
      const record = await server.gatehouse.storage.tokens.findRefresh(
        refreshTokenRef(tokens.refresh_token) ?? assert.fail(),
      );
      assert.ok(record?.usedAt);
    });

    test("unknown, malformed and empty refresh tokens get the same invalid_grant", async () => {
      const answers = await Promise.all(["A".repeat(43), "not a token", "x"].map((token) => refresh(server, token)));
      for (const answer of answers) {
        assert.equal(answer.status, 400);
        assert.equal(answer.body.code, "INVALID_GRANT");
      }
      assert.deepEqual(answers[0]?.body.detail, answers[1]?.body.detail);
      // Bodies of the wrong shape: the same answer, whatever is wrong with them.
      for (const body of [{ refresh_token: 42 }, { refresh_token: "" }, { refresh_token: "A".repeat(513) }, { x: 1 }]) {
        const answer = await server.call("POST", "/auth/refresh", body, { key: null });
        assert.equal(answer.status, 400, JSON.stringify(body));
        assert.equal(answer.body.error, "invalid_grant");
      }
    });

    test("logout revokes the family and denies the access token by jti; /auth/me rejects it", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const other = await login(server, user);
      assert.equal((await me(server, tokens.access_token)).status, 200);
      const out = await server.call("POST", "/auth/logout", undefined, { key: tokens.access_token });
      assert.equal(out.status, 204);
      const after = await me(server, tokens.access_token);
      assert.equal(after.status, 401);
      assert.equal(after.headers.get("www-authenticate"), 'Bearer realm="gatehouse", error="invalid_token"');
      assert.equal((await refresh(server, tokens.refresh_token)).status, 400);
      const { decodeJwt } = await import("jose");
      const jti = decodeJwt(tokens.access_token).jti;
      assert.equal(typeof jti, "string");
      assert.equal(await server.gatehouse.storage.tokens.isJtiDenied(String(jti)), true);
      // Another sign-in of the same user is untouched.
      assert.equal((await me(server, other.access_token)).status, 200);
      assert.equal((await refresh(server, other.refresh_token)).status, 200);
    });

    test("logout with the refresh token in the body; with a valid access token too, that one is denied as well", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const other = await login(server, user);
      const out = await logoutWith(server, tokens.refresh_token, tokens.access_token);
      assert.equal(out.status, 204);
      assert.equal((await me(server, tokens.access_token)).status, 401);
      assert.equal((await refresh(server, tokens.refresh_token)).status, 400);
      const { decodeJwt } = await import("jose");
      assert.equal(await server.gatehouse.storage.tokens.isJtiDenied(String(decodeJwt(tokens.access_token).jti)), true);
      assert.equal((await me(server, other.access_token)).status, 200);
      const events = await auditEvents(server, `action=token.logout&targetId=${user.id}`);
      assert.ok(events.some((event) => event.outcome === "success" && event.detail?.via === "refresh_token"));
    });

    test("logout with a made-up refresh token (a real id, another secret) or a malformed one ends nothing", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const [id] = tokens.refresh_token.split(".");
      const forged = `${id}.${"A".repeat(43)}`;
      for (const token of [forged, "not-a-token"]) {
        const out = await logoutWith(server, token, null);
        // Answered as a real logout would be (RFC 7009 §2.2): the client's aim is met either way.
        assert.equal(out.status, 204, token);
      }
      assert.equal((await me(server, tokens.access_token)).status, 200);
      assert.equal((await refresh(server, tokens.refresh_token)).status, 200);
      const failures = (await auditEvents(server, "action=token.logout&outcome=failure")).map((e) => e.detail?.reason);
      assert.ok(failures.includes("UNKNOWN") && failures.includes("MALFORMED"), JSON.stringify(failures));
    });

    test("logout with the refresh token alone ends its sign-in, that sign-in's access tokens included", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      const other = await login(server, user);
      const out = await logoutWith(server, tokens.refresh_token, null);
      assert.equal(out.status, 204);
      // The access token was not sent; it is refused all the same, by its sign-in (sid).
      assert.equal((await me(server, tokens.access_token)).status, 401);
      assert.equal((await refresh(server, tokens.refresh_token)).status, 400);
      assert.equal((await me(server, other.access_token)).status, 200);
    });

    test("logout with a spent refresh token ends the family and is recorded as a probable theft", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const second = await refresh(server, first.refresh_token);
      assert.equal(second.status, 200);
      const out = await logoutWith(server, first.refresh_token, null);
      assert.equal(out.status, 204);
      assert.equal((await me(server, second.body.access_token)).status, 401);
      assert.equal((await refresh(server, second.body.refresh_token)).status, 400);
      const reuse = await auditEvents(server, `action=token.refresh_reuse&targetId=${user.id}`);
      assert.equal(reuse.length, 1);
      assert.equal(reuse[0]?.detail?.probableTheft, true);
    });

    test("logout with no credential at all says what it takes, the refresh token included", async () => {
      for (const body of [undefined, {}]) {
        const out = await server.call("POST", "/auth/logout", body, { key: null });
        assert.equal(out.status, 401);
        assert.equal(out.body.code, "UNAUTHENTICATED");
        assert.match(out.body.detail, /refresh_token/);
      }
    });

    test("logout: a refresh_token that is not a string is a 400 problem; other members are ignored", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      for (const body of [{ refresh_token: 42 }, { refresh_token: "" }, { refresh_token: null }]) {
        const out = await server.call("POST", "/auth/logout", body, { key: tokens.access_token });
        assert.equal(out.status, 400, JSON.stringify(body));
        assert.equal(out.headers.get("content-type"), "application/problem+json; charset=utf-8");
        assert.equal(out.body.code, "VALIDATION_FAILED");
        assert.equal(out.body.errors?.[0]?.path, "/refresh_token");
      }
      assert.equal((await me(server, tokens.access_token)).status, 200, "nothing ended by a refused request");
      // Members logout does not read (RFC 7009's names, say) do not stop it.
      const out = await server.call(
        "POST",
        "/auth/logout",
        { token: "whatever", token_type_hint: "refresh_token" },
        { key: tokens.access_token },
      );
      assert.equal(out.status, 204);
      assert.equal((await me(server, tokens.access_token)).status, 401);
    });

    test("disabling a user ends their refresh tokens and access at once", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      await server.call("POST", `/v1/users/${user.id}/disable`);
      assert.equal((await me(server, tokens.access_token)).status, 401);
      assert.equal((await refresh(server, tokens.refresh_token)).status, 400);
    });
  });

  describe(`refresh token lifetimes, on a frozen clock (${backend.name})`, () => {
    const clock = manualClock(Date.now());
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, {
        clock,
        env: { GATEHOUSE_REFRESH_TOKEN_SECONDS: "86400", GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS: "3600" },
      });
    });
    after(() => server.close());

    test("an app whose access token has expired logs out with its refresh token, without refreshing first", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      clock.advance(16 * 60_000);
      assert.equal((await me(server, tokens.access_token)).status, 401, "the access token has expired");
      // The expired access token is sent along, as a client would: it changes nothing.
      const out = await logoutWith(server, tokens.refresh_token, tokens.access_token);
      assert.equal(out.status, 204);
      assert.equal((await refresh(server, tokens.refresh_token)).status, 400);
    });

    test("idle limit: a token unused for longer than the idle limit is refused", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      clock.advance(3600_000 - 1);
      const fresh = await refresh(server, tokens.refresh_token);
      assert.equal(fresh.status, 200);
      clock.advance(3600_000);
      assert.equal((await refresh(server, fresh.body.refresh_token)).status, 400);
    });

    test("absolute limit: rotation never extends the family past its end", async () => {
      const user = await createUser(server);
      let token = (await login(server, user)).refresh_token;
      for (let hour = 0; hour < 23; hour++) {
        clock.advance(3600_000 - 60_000);
        const next = await refresh(server, token);
        assert.equal(next.status, 200, `hour ${hour}`);
        token = next.body.refresh_token;
      }
      clock.advance(3600_000);
      assert.equal((await refresh(server, token)).status, 400);
    });

    test("access tokens expire after 15 minutes", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user);
      clock.advance(899_000);
      assert.equal((await me(server, tokens.access_token)).status, 200);
      clock.advance(2_000 + 5_000);
      assert.equal((await me(server, tokens.access_token)).status, 401);
    });
  });
}
