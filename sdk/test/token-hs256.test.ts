import assert from "node:assert/strict";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { createTokenVerifier } from "../src/index.ts";
import { b64, pathCountingFetch, segments, startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

const SECRET = randomBytes(32);

describe("HS256: the SDK verifies with Gatehouse's shared secret", () => {
  let gh: TokenGatehouse;
  let rsa: TokenGatehouse;
  before(async () => {
    gh = await startTokenGatehouse({
      env: { GATEHOUSE_JWT_ALG: "HS256", GATEHOUSE_JWT_HS256_SECRET: SECRET.toString("base64url") },
    });
    rsa = await startTokenGatehouse();
  });
  after(async () => {
    await gh.close();
    await rsa.close();
  });

  const verifier = (secret: string | Uint8Array, fetch?: typeof globalThis.fetch) =>
    createTokenVerifier({ issuer: gh.issuer, audience: gh.audience, hs256Secret: secret, ...(fetch ? { fetch } : {}) });

  test("a token from a Gatehouse on HS256 verifies, with the secret as the setting's text or as bytes, and no JWKS is fetched", async () => {
    const { userId, accessToken } = await gh.signIn({ scopes: ["payments:read"] });
    assert.equal(decodeProtectedHeader(accessToken).alg, "HS256");
    const counting = pathCountingFetch();
    const asFile = `${SECRET.toString("base64")}\n`; // as `openssl rand -base64 32 > file` writes it
    for (const secret of [SECRET.toString("base64url"), SECRET.toString("base64"), asFile, new Uint8Array(SECRET)]) {
      const result = await verifier(secret, counting.fetch).verify(accessToken, { scopes: ["payments:read"] });
      assert.equal(result.valid, true);
      if (result.valid) assert.equal(result.token.sub, userId);
    }
    assert.equal(counting.count("/.well-known/jwks.json"), 0);
  });

  test("another secret is UNKNOWN_KEY; our kid with another secret's MAC is BAD_SIGNATURE", async () => {
    const { accessToken } = await gh.signIn();
    assert.deepEqual(await verifier(randomBytes(32)).verify(accessToken), {
      valid: false,
      code: "INVALID_TOKEN",
      reason: "UNKNOWN_KEY",
    });
    const [header] = segments(accessToken);
    const claims = { ...decodeJwt(accessToken), jti: randomUUID() };
    const input = `${header}.${b64(claims)}`;
    const forged = `${input}.${createHmac("sha256", randomBytes(32)).update(input).digest("base64url")}`;
    assert.deepEqual(await verifier(SECRET).verify(forged), {
      valid: false,
      code: "INVALID_TOKEN",
      reason: "BAD_SIGNATURE",
    });
    // Claims changed under the real MAC: the same.
    const tampered = `${header}.${b64({ ...decodeJwt(accessToken), sub: "usr_admin" })}.${segments(accessToken)[2]}`;
    assert.deepEqual(await verifier(SECRET).verify(tampered), {
      valid: false,
      code: "INVALID_TOKEN",
      reason: "BAD_SIGNATURE",
    });
  });

  test("only HS256: an RS256 token, and HS512 or none under our kid, are ALG_NOT_ALLOWED", async () => {
    const { accessToken } = await rsa.signIn();
    assert.deepEqual(await verifier(SECRET).verify(accessToken), {
      valid: false,
      code: "INVALID_TOKEN",
      reason: "ALG_NOT_ALLOWED",
    });
    const ours = await gh.signIn();
    const { kid } = decodeProtectedHeader(ours.accessToken);
    for (const alg of ["HS512", "none", "RS256"]) {
      const input = `${b64({ alg, typ: "at+jwt", kid })}.${segments(ours.accessToken)[1]}`;
      const token = `${input}.${createHmac("sha256", SECRET).update(input).digest("base64url")}`;
      const result = await verifier(SECRET).verify(token);
      assert.deepEqual(result, { valid: false, code: "INVALID_TOKEN", reason: "ALG_NOT_ALLOWED" }, alg);
    }
  });

  test("caller mistakes are TypeErrors at construction", () => {
    const base = { issuer: "https://gh.example", audience: "https://gh.example" };
    for (const options of [
      { hs256Secret: randomBytes(31) },
      { hs256Secret: randomBytes(31).toString("base64url") },
      { hs256Secret: "not base64 at all!" },
      { hs256Secret: SECRET, algorithms: ["RS256"] as const },
      { hs256Secret: SECRET, jwksUri: "https://gh.example/.well-known/jwks.json" },
    ]) {
      assert.throws(
        () => createTokenVerifier({ ...base, ...options }),
        TypeError,
        JSON.stringify(Object.keys(options)),
      );
    }
  });
});
