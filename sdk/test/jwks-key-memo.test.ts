import assert from "node:assert/strict";
import { generateKeyPairSync, type KeyObject, randomUUID, sign } from "node:crypto";
import { describe, test } from "node:test";
import { createTokenVerifier } from "../src/index.ts";
import { b64 } from "./support/tokens.ts";

const ISSUER = "https://gatehouse.test";

/**
 * The verifier keeps the key of each kid it has resolved, so new tokens under that kid are
 * checked without a promise. These pin what that memo must never change: a key taken out
 * of the JWKS stops verifying at the refetch that sees it gone, on the synchronous way too.
 * The JWKS here is served by a fetch of the test's own, so the set can change between calls.
 */
describe("the verifier's memo of JWKS keys", () => {
  const keyPair = () => generateKeyPairSync("rsa", { modulusLength: 2048 });
  const first = { kid: "first-key-0000000000000000000000000000000", ...keyPair() };
  const second = { kid: "second-key-000000000000000000000000000000", ...keyPair() };
  const jwk = (key: { kid: string; publicKey: KeyObject }) => ({
    ...key.publicKey.export({ format: "jwk" }),
    kid: key.kid,
    alg: "RS256",
    use: "sig",
  });
  const token = (key: { kid: string; privateKey: KeyObject }) => {
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: ISSUER, aud: ISSUER, sub: "usr_1", iat: now, exp: now + 900, jti: randomUUID() };
    const input = `${b64({ alg: "RS256", typ: "at+jwt", kid: key.kid })}.${b64(claims)}`;
    return `${input}.${sign("sha256", Buffer.from(input), key.privateKey).toString("base64url")}`;
  };

  test("a key removed from the JWKS is refused, at once or not, after the refetch that sees it gone", async () => {
    let published = [jwk(first)];
    let fetches = 0;
    const fetch = (async () => {
      fetches++;
      return new Response(JSON.stringify({ keys: published }), { status: 200 });
    }) as typeof globalThis.fetch;
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: ISSUER, fetch, jwks: { refetchFloorMs: 0 } });

    assert.equal(verifier.verifyNow?.(token(first)), null, "nothing resolved yet");
    assert.equal((await verifier.verify(token(first))).valid, true);
    const atOnce = verifier.verifyNow?.(token(first));
    assert.ok(atOnce?.valid && !atOnce.cached, "a new token under the resolved kid, checked at once");
    assert.equal(fetches, 1);

    // Gatehouse drops the first key and publishes a second; a token under the new kid makes the verifier refetch.
    published = [jwk(second)];
    assert.equal((await verifier.verify(token(second))).valid, true);
    assert.equal(fetches, 2);
    const next = verifier.verifyNow?.(token(second));
    assert.ok(next?.valid && !next.cached, "the new kid, once resolved, is checked at once");
    const old = token(first);
    assert.equal(verifier.verifyNow?.(old), null, "the memo went with the old JWKS");
    assert.deepEqual(await verifier.verify(old), { valid: false, code: "INVALID_TOKEN", reason: "UNKNOWN_KEY" });
  });

  test("a kid resolved under one algorithm is not served for another", async () => {
    const fetch = (async () =>
      new Response(JSON.stringify({ keys: [jwk(first)] }), { status: 200 })) as typeof globalThis.fetch;
    const verifier = createTokenVerifier({ issuer: ISSUER, audience: ISSUER, fetch, algorithms: ["RS256", "ES256"] });
    assert.equal((await verifier.verify(token(first))).valid, true);
    // The same kid with alg ES256 (forged header, RSA signature): not from the memo, and refused.
    const [, payload, signature] = token(first).split(".");
    const forged = `${b64({ alg: "ES256", typ: "at+jwt", kid: first.kid })}.${payload}.${signature}`;
    assert.equal(verifier.verifyNow?.(forged), null);
    assert.equal((await verifier.verify(forged)).valid, false);
  });
});
