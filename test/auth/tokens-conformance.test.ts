import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, me, startAuthServer, uniqueEmail } from "./support.ts";

// Requirements of issue 3 that other tests touched but did not pin: the access token's
// exact claim set (and nothing personal in it), denial by jti rather than by the token's
// string, and sign-in failures that are the same answer whole, not only in status and code.

/** Headers that legitimately differ between two answers. */
const PER_REQUEST = new Set(["date", "x-request-id", "keep-alive", "connection"]);

for (const backend of backends()) {
  describe(`access tokens and sign-in, issue 3 conformance (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend);
    });
    after(() => server.close());

    test("the access token carries typ at+jwt and exactly the documented claims, no personal data", async () => {
      const user = await createUser(server, { scopes: ["payments:read"] });
      const tokens = await login(server, user);
      const header = decodeProtectedHeader(tokens.access_token);
      assert.deepEqual(Object.keys(header).sort(), ["alg", "kid", "typ"]);
      assert.equal(header.typ, "at+jwt");
      assert.equal(header.alg, "RS256");
      const claims = decodeJwt(tokens.access_token);
      assert.deepEqual(Object.keys(claims).sort(), [
        "aud",
        "client_id",
        "exp",
        "iat",
        "iss",
        "jti",
        "scope",
        "sid",
        "sub",
      ]);
      assert.equal(claims.iss, server.gatehouse.config.issuer);
      assert.equal(claims.aud, server.gatehouse.config.auth.audience);
      assert.equal(claims.sub, user.id);
      assert.equal(claims.scope, "payments:read");
      assert.equal((claims.exp as number) - (claims.iat as number), 900);
      const text = JSON.stringify(claims).toLowerCase();
      assert.ok(!text.includes(user.email.toLowerCase()), "no email in the token");
      assert.ok(!text.includes("argon2") && !text.includes(user.password), "no password material");
    });

    test("logout denies by jti: the same jti in another token string, under a live sign-in, is refused too", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const second = await login(server, user);
      // A second token string with the first token's jti, but the second sign-in's sid, so
      // that only the jti can condemn it. Signed with the server's own key: a token
      // Gatehouse could have issued.
      const key = await server.gatehouse.keyring.signingKey();
      const claims = { ...decodeJwt(first.access_token), sid: decodeJwt(second.access_token).sid };
      const twin = await new SignJWT(claims)
        .setProtectedHeader({ alg: key.alg, typ: "at+jwt", kid: key.kid })
        .sign(key.privateKey);
      assert.notEqual(twin, first.access_token);
      assert.equal((await me(server, twin)).status, 200, "before logout the twin passes: the test can tell");

      const out = await server.call("POST", "/auth/logout", undefined, { key: first.access_token });
      assert.equal(out.status, 204);
      assert.equal((await me(server, first.access_token)).status, 401);
      const refused = await me(server, twin);
      assert.equal(refused.status, 401);
      assert.equal(refused.headers.get("www-authenticate"), 'Bearer realm="gatehouse", error="invalid_token"');
      assert.equal((await me(server, second.access_token)).status, 200, "the other sign-in lives on");
    });

    test("unknown account and wrong password: the same status, headers and body, but for the request id", async () => {
      const user = await createUser(server);
      const answers = [];
      for (const email of [uniqueEmail("nobody"), user.email]) {
        const response = await server.call(
          "POST",
          "/auth/login",
          { email, password: "not the password at all" },
          { key: null },
        );
        const headers = Object.fromEntries(
          [...response.headers].filter(([name]) => !PER_REQUEST.has(name.toLowerCase())),
        );
        answers.push({ status: response.status, headers, body: { ...response.body, requestId: undefined } });
      }
      assert.equal(answers[0]?.status, 401);
      assert.deepEqual(answers[1], answers[0]);
    });
  });
}
