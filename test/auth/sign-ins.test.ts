import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeJwt } from "jose";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, me, startAuthServer } from "./support.ts";

const refresh = (server: TestServer, token: string) =>
  server.call("POST", "/auth/refresh", { refresh_token: token }, { key: null });
const signIns = (server: TestServer, accessToken: string | null) =>
  server.call("GET", "/auth/sign-ins", undefined, { key: accessToken });

for (const backend of backends()) {
  describe(`a user's token sign-ins, listed and ended (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    test("each live sign-in once, the caller's own marked current, no secret in the answer", async () => {
      const user = await createUser(server);
      const phone = await login(server, user);
      const laptop = await login(server, user);
      // A rotation replaces the sign-in's refresh token; the sign-in is still one.
      const rotated = await refresh(server, laptop.refresh_token);
      assert.equal(rotated.status, 200);
      const listed = await signIns(server, phone.access_token);
      assert.equal(listed.status, 200);
      const data = listed.body.data as Array<Record<string, unknown>>;
      assert.deepEqual(
        data.map((signIn) => signIn.id).sort(),
        [decodeJwt(phone.access_token).sid, decodeJwt(laptop.access_token).sid].sort(),
      );
      const current = data.find((signIn) => signIn.current === true);
      assert.equal(current?.id, decodeJwt(phone.access_token).sid);
      const laptopEntry = data.find((signIn) => signIn.id === decodeJwt(laptop.access_token).sid);
      assert.ok(laptopEntry);
      assert.ok(String(laptopEntry.lastRefreshedAt) >= String(laptopEntry.startedAt));
      assert.ok(Date.parse(String(laptopEntry.expiresAt)) > Date.now());
      const text = JSON.stringify(listed.body);
      for (const secret of [phone.refresh_token, laptop.refresh_token, rotated.body.refresh_token]) {
        assert.ok(!text.includes(secret) && !text.includes(secret.split(".")[1] as string));
      }
    });

    test("ending one sign-in ends its tokens at once and leaves the others", async () => {
      const user = await createUser(server);
      const phone = await login(server, user);
      const laptop = await login(server, user);
      const laptopId = String(decodeJwt(laptop.access_token).sid);
      const ended = await server.call("DELETE", `/auth/sign-ins/${laptopId}`, undefined, { key: phone.access_token });
      assert.equal(ended.status, 204);
      assert.equal((await me(server, laptop.access_token)).status, 401);
      assert.equal((await refresh(server, laptop.refresh_token)).status, 400);
      assert.equal((await me(server, phone.access_token)).status, 200);
      const listed = await signIns(server, phone.access_token);
      assert.deepEqual(
        listed.body.data.map((signIn: { id: string }) => signIn.id),
        [decodeJwt(phone.access_token).sid],
      );
      const events = await auditEvents(server, `action=token.logout&targetId=${user.id}`);
      assert.ok(events.some((event) => event.detail?.via === "sign_in_list" && event.detail?.family === laptopId));
      // Ended already: not found the second time.
      const again = await server.call("DELETE", `/auth/sign-ins/${laptopId}`, undefined, { key: phone.access_token });
      assert.equal(again.status, 404);
    });

    test("twenty concurrent ends of one sign-in: one ends it, the others find it ended", async () => {
      const user = await createUser(server);
      const phone = await login(server, user);
      const laptop = await login(server, user);
      const laptopId = String(decodeJwt(laptop.access_token).sid);
      const answers = await Promise.all(
        Array.from({ length: 20 }, () =>
          server.call("DELETE", `/auth/sign-ins/${laptopId}`, undefined, { key: phone.access_token }),
        ),
      );
      const statuses = answers.map((answer) => answer.status).sort();
      assert.deepEqual(statuses, [204, ...Array(19).fill(404)]);
      await server.gatehouse.audit.flush();
      const ended = await auditEvents(server, `action=token.logout&outcome=success&targetId=${user.id}`);
      assert.equal(ended.filter((event) => event.detail?.family === laptopId).length, 1, "one success recorded");
    });

    test("another user's sign-in is not found, a malformed id is a 400, no credential a 401", async () => {
      const alice = await createUser(server);
      const bob = await createUser(server);
      const aliceTokens = await login(server, alice);
      const bobTokens = await login(server, bob);
      const bobId = String(decodeJwt(bobTokens.access_token).sid);
      const foreign = await server.call("DELETE", `/auth/sign-ins/${bobId}`, undefined, {
        key: aliceTokens.access_token,
      });
      assert.equal(foreign.status, 404);
      assert.equal((await me(server, bobTokens.access_token)).status, 200, "Bob is still signed in");
      const probes = await auditEvents(server, `action=token.logout&outcome=failure&targetId=${alice.id}`);
      assert.ok(probes.some((event) => event.detail?.reason === "NOT_FOUND" && event.detail?.family === bobId));
      const malformed = await server.call("DELETE", "/auth/sign-ins/not-an-id", undefined, {
        key: aliceTokens.access_token,
      });
      assert.equal(malformed.status, 400);
      assert.equal((await signIns(server, null)).status, 401);
      // Without a credential, a malformed id is a 401 too: the caller learns nothing of the schema.
      for (const path of ["/auth/sign-ins/not-an-id", "/auth/sessions/not-an-id"]) {
        const anonymous = await server.call("DELETE", path, undefined, { key: null });
        assert.equal(anonymous.status, 401, path);
        assert.equal(anonymous.body.code, "UNAUTHENTICATED", path);
      }
      assert.equal((await server.call("DELETE", `/auth/sign-ins/${bobId}`, undefined, { key: null })).status, 401);
    });
  });
}
