import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createUser, login, startAuthServer } from "../auth/support.ts";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";

const ORIGIN = "https://app.example.com";

/** The value of one `gatehouse_tokens_issued_total` series (0 when absent). */
async function issued(server: TestServer, kind: string): Promise<number> {
  const metrics = await server.call("GET", "/metrics");
  assert.equal(metrics.status, 200);
  const match = new RegExp(`^gatehouse_tokens_issued_total\\{kind="${kind}"\\} (\\d+)$`, "m").exec(
    String(metrics.body),
  );
  return match ? Number(match[1]) : 0;
}

for (const backend of backends()) {
  describe(`gatehouse_tokens_issued_total counts each credential issued (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, { env: { GATEHOUSE_ALLOWED_ORIGINS: ORIGIN } });
    });
    after(() => server?.close());

    test("API keys created and rotated, tokens at sign-in and refresh, cookie sessions; not refusals", async () => {
      const before = {
        api_key: await issued(server, "api_key"),
        access_token: await issued(server, "access_token"),
        refresh_token: await issued(server, "refresh_token"),
        session: await issued(server, "session"),
      };
      const created = await server.call("POST", "/v1/keys", { name: "issued", scopes: [] });
      assert.equal(created.status, 201);
      const rotated = await server.call("POST", `/v1/keys/${created.body.id}/rotate`, { gracePeriodSeconds: 0 });
      assert.equal(rotated.status, 201);
      // A second rotation of the same key is refused: nothing issued.
      const again = await server.call("POST", `/v1/keys/${created.body.id}/rotate`, { gracePeriodSeconds: 0 });
      assert.equal(again.status, 409);

      const user = await createUser(server);
      const tokens = await login(server, user);
      const refreshed = await server.call(
        "POST",
        "/auth/refresh",
        { refresh_token: tokens.refresh_token },
        { key: null },
      );
      assert.equal(refreshed.status, 200);
      // Reuse of the spent token: refused, nothing issued.
      const reused = await server.call("POST", "/auth/refresh", { refresh_token: tokens.refresh_token }, { key: null });
      assert.equal(reused.status, 400);
      const wrong = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: "not the password at all" },
        { key: null },
      );
      assert.equal(wrong.status, 401);
      const session = await server.call(
        "POST",
        "/auth/session",
        { email: user.email, password: user.password },
        { key: null, headers: { origin: ORIGIN } },
      );
      assert.equal(session.status, 204);

      assert.equal(await issued(server, "api_key"), before.api_key + 2);
      assert.equal(await issued(server, "access_token"), before.access_token + 2);
      assert.equal(await issued(server, "refresh_token"), before.refresh_token + 2);
      assert.equal(await issued(server, "session"), before.session + 1);
    });
  });
}
