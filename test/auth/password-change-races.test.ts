import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, me, STRONG_PASSWORD, startAuthServer } from "./support.ts";

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

for (const backend of backends()) {
  describe(`password changes and what races them (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    test("concurrent changes checked against the same password: one wins, the others are told it is wrong", async () => {
      const user = await createUser(server);
      const owner = await login(server, user);
      const answers = await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          server.call(
            "POST",
            "/auth/password",
            { currentPassword: user.password, newPassword: `${STRONG_PASSWORD} change ${i}` },
            { key: owner.access_token },
          ),
        ),
      );
      const statuses = answers.map((answer) => answer.status).sort();
      assert.deepEqual(statuses, [204, 401, 401, 401, 401]);
      // The winner's password is the password now; the old one is not.
      const winner = answers.findIndex((answer) => answer.status === 204);
      const email = user.email;
      const newPassword = `${STRONG_PASSWORD} change ${winner}`;
      assert.equal(
        (await server.call("POST", "/auth/login", { email, password: newPassword }, { key: null })).status,
        200,
      );
      const old = await server.call("POST", "/auth/login", { email, password: user.password }, { key: null });
      assert.equal(old.status, 401);
    });

    test("sign-ins with the old password racing a change do not outlive it", async () => {
      const user = await createUser(server);
      const owner = await login(server, user);
      const credentials = { email: user.email, password: user.password };
      const change = server.call(
        "POST",
        "/auth/password",
        { currentPassword: user.password, newPassword: `${STRONG_PASSWORD} renewed` },
        { key: owner.access_token },
      );
      // Staggered, so that some are hashing when the change lands (each hash takes tens of ms).
      const racing: Array<ReturnType<TestServer["call"]>> = [];
      for (let i = 0; i < 8; i++) {
        racing.push(server.call("POST", "/auth/login", credentials, { key: null }));
        await pause(4);
      }
      assert.equal((await change).status, 204);
      for (const answer of await Promise.all(racing)) {
        // 429: an attempt counted while more than the free failures were still being checked.
        assert.ok([200, 401, 429].includes(answer.status), String(answer.status));
        if (answer.status === 200) {
          // Answered, whether before or after the change: either way it ends with it.
          assert.equal((await me(server, answer.body.access_token)).status, 401);
          const refreshed = await server.call(
            "POST",
            "/auth/refresh",
            { refresh_token: answer.body.refresh_token },
            {
              key: null,
            },
          );
          assert.equal(refreshed.status, 400);
        }
      }
      assert.equal((await me(server, owner.access_token)).status, 200, "the changer's own sign-in is kept");
    });
  });
}
