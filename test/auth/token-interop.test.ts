import assert from "node:assert/strict";
import { createSecretKey } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { createLocalJWKSet, type JSONWebKeySet, type JWTVerifyOptions, jwtVerify } from "jose";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, refresh, startAuthServer } from "./support.ts";

// Gatehouse serializes and signs its access tokens itself (src/tokens/jws-sign.ts, with
// node:crypto); jose, as independent a JOSE implementation as there is, must accept every
// one of them, through the published JWKS (or the shared secret for HS256), with every
// check pinned.
const HS256_SECRET = Buffer.alloc(32, 7);
const ALGORITHMS = [
  { alg: "RS256", env: {} },
  { alg: "ES256", env: {} },
  { alg: "EdDSA", env: {} },
  { alg: "HS256", env: { GATEHOUSE_JWT_HS256_SECRET: HS256_SECRET.toString("base64url") } },
] as const;

const [backend] = backends();
for (const { alg, env } of ALGORITHMS) {
  describe(`access tokens signed with ${alg} verify with jose`, { skip: !backend }, () => {
    let server: TestServer;
    before(async () => {
      if (backend) server = await startAuthServer(backend, { env: { GATEHOUSE_JWT_ALG: alg, ...env } });
    });
    after(() => server?.close());

    test("from sign-in and from refresh, against the JWKS or the secret", async () => {
      const user = await createUser(server);
      const first = await login(server, user);
      const refreshed = await refresh(server, first.refresh_token);
      assert.equal(refreshed.status, 200);
      const jwks = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
      const key = alg === "HS256" ? createSecretKey(HS256_SECRET) : createLocalJWKSet(jwks);
      const pins: JWTVerifyOptions = {
        algorithms: [alg],
        issuer: server.gatehouse.config.issuer,
        audience: server.gatehouse.config.auth.audience,
        typ: "at+jwt",
        requiredClaims: ["iss", "sub", "aud", "iat", "exp", "jti"],
      };
      for (const token of [first.access_token, refreshed.body.access_token as string]) {
        // jose's overloads differ for a key and a key set; one call each keeps both typed.
        const { payload, protectedHeader } =
          typeof key === "function" ? await jwtVerify(token, key, pins) : await jwtVerify(token, key, pins);
        assert.equal(protectedHeader.alg, alg);
        assert.equal(typeof protectedHeader.kid, "string");
        assert.equal(payload.sub, user.id);
        assert.equal(payload.exp, (payload.iat as number) + 900);
      }
    });
  });
}
