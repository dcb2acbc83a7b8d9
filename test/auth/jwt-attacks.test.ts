/**
 * The attack catalogue of jwt_tool (ticarpi/jwt_tool: -X a, -X k, -X n, -X i, -X s, -X p,
 * -I claim tampering) and RFC 8725 §2, run against GET /auth/me over real HTTP. Every
 * forged token must get the same 401 with `WWW-Authenticate: Bearer error="invalid_token"`
 * and the same body: no hint of which check failed.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign as nodeSign, randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, me, startAuthServer } from "./support.ts";

const b64 = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

function parts(token: string): [string, string, string] {
  const [h, p, s] = token.split(".");
  assert.ok(h && p && s !== undefined);
  return [h, p, s];
}

const hs256 = (input: string, key: string | Buffer) => createHmac("sha256", key).update(input).digest("base64url");

const [backend] = backends();

describe(`JWT attacks against /auth/me (${backend?.name ?? "none"})`, { skip: backend === undefined }, () => {
  let server: TestServer;
  let valid: string;
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  let userId: string;
  let reference: { status: number; body: unknown; challenge: string | null };

  before(async () => {
    if (!backend) return;
    server = await startAuthServer(backend);
    const user = await createUser(server);
    userId = user.id;
    valid = (await login(server, user)).access_token;
    header = decodeProtectedHeader(valid) as Record<string, unknown>;
    claims = decodeJwt(valid) as Record<string, unknown>;
    assert.equal((await me(server, valid)).status, 200);
    const refused = await me(server, "x.y.z");
    reference = {
      status: refused.status,
      body: { ...refused.body, requestId: undefined },
      challenge: refused.headers.get("www-authenticate"),
    };
  });
  after(() => server?.close());

  async function assertRefused(token: string, label: string) {
    const response = await me(server, token);
    assert.equal(response.status, 401, `${label}: status ${response.status}`);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="gatehouse", error="invalid_token"', label);
    assert.deepEqual({ ...response.body, requestId: undefined }, reference.body, `${label}: body differs`);
  }

  /** Signs with the server's own current key: for tests of claim and header checks. */
  async function signWithServerKey(
    headerOverrides: Record<string, unknown>,
    claimOverrides: Record<string, unknown>,
  ): Promise<string> {
    const key = await server.gatehouse.keyring.signingKey();
    const payload: Record<string, unknown> = { ...claims, jti: randomUUID(), ...claimOverrides };
    for (const [name, value] of Object.entries(payload)) if (value === undefined) delete payload[name];
    const protectedHeader: Record<string, unknown> = { alg: key.alg, typ: "at+jwt", kid: key.kid, ...headerOverrides };
    for (const [name, value] of Object.entries(protectedHeader)) if (value === undefined) delete protectedHeader[name];
    return new SignJWT(payload)
      .setProtectedHeader({ ...protectedHeader, alg: String(protectedHeader.alg) })
      .sign(key.privateKey);
  }

  test("the reference refusal is a bare invalid_token", () => {
    assert.equal(reference.status, 401);
    assert.equal(reference.challenge, 'Bearer realm="gatehouse", error="invalid_token"');
  });

  test("no credential at all is a challenge without an error code (RFC 6750 §3.1)", async () => {
    const response = await server.call("GET", "/auth/me", undefined, { key: null });
    assert.equal(response.status, 401);
    assert.equal(response.headers.get("www-authenticate"), 'Bearer realm="gatehouse"');
    assert.equal(response.body.code, "UNAUTHENTICATED");
  });

  test("a token signed by the server with its own key passes (the harness itself is sound)", async () => {
    assert.equal((await me(server, await signWithServerKey({}, {}))).status, 200);
  });

  test("alg: none in every casing, with and without a signature", async () => {
    const [, payload, signature] = parts(valid);
    for (const alg of ["none", "None", "NONE", "nOnE"]) {
      const h = b64({ ...header, alg });
      await assertRefused(`${h}.${payload}.`, `${alg} empty signature`);
      await assertRefused(`${h}.${payload}.${signature}`, `${alg} original signature`);
      await assertRefused(`${h}.${payload}.${b64("x")}`, `${alg} junk signature`);
    }
  });

  test("key confusion: HS256 keyed with the RS256 public key (PEM, DER and JWK forms)", async () => {
    const jwks = (await server.call("GET", "/.well-known/jwks.json", undefined, { key: null })).body;
    const jwk = jwks.keys.find((k: { kid: string }) => k.kid === header.kid);
    assert.ok(jwk);
    const { createPublicKey } = await import("node:crypto");
    const publicKey = createPublicKey({ key: jwk, format: "jwk" });
    const forms: Array<string | Buffer> = [
      publicKey.export({ format: "pem", type: "spki" }).toString(),
      publicKey.export({ format: "pem", type: "pkcs1" }).toString(),
      publicKey.export({ format: "der", type: "spki" }),
      JSON.stringify(jwk),
    ];
    for (const [i, secret] of forms.entries()) {
      const input = `${b64({ ...header, alg: "HS256" })}.${b64({ ...claims, jti: randomUUID() })}`;
      await assertRefused(`${input}.${hs256(input, secret)}`, `form ${i}`);
    }
  });

  test("null and empty signatures", async () => {
    const [h, p] = parts(valid);
    for (const signature of ["", "AA", "AAAA", b64(Buffer.alloc(256))]) {
      await assertRefused(`${h}.${p}.${signature}`, `signature "${signature.slice(0, 8)}"`);
    }
  });

  test("claim tampering keeps the old signature: exp, aud, iss, sub, scope all refused", async () => {
    const [h, , s] = parts(valid);
    const tampered: Array<[string, Record<string, unknown>]> = [
      ["exp", { exp: Math.floor(Date.now() / 1000) + 86400 * 365 }],
      ["aud", { aud: "https://evil.example" }],
      ["iss", { iss: "https://evil.example" }],
      ["sub", { sub: "usr_000000000000admin" }],
      ["scope", { scope: "admin" }],
    ];
    for (const [label, change] of tampered) await assertRefused(`${h}.${b64({ ...claims, ...change })}.${s}`, label);
  });

  test("claims checked even under a valid signature: aud, iss, exp, nbf, iat, sub, missing claims", async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, Record<string, unknown>]> = [
      ["wrong aud", { aud: "https://other.example" }],
      ["aud array without ours", { aud: ["https://other.example"] }],
      ["wrong iss", { iss: "https://evil.example" }],
      ["expired", { iat: now - 3600, exp: now - 1800 }],
      ["not yet valid (nbf)", { nbf: now + 600 }],
      ["issued in the future", { iat: now + 600, exp: now + 1500 }],
      ["lives longer than we issue", { exp: now + 86400 }],
      ["unknown subject", { sub: "usr_00000000000000000000000000" }],
      ["no exp", { exp: undefined }],
      ["no jti", { jti: undefined }],
      ["no sub", { sub: undefined }],
      ["no client_id", { client_id: undefined }],
      ["no sid", { sid: undefined }],
      ["sub not a string", { sub: 42 }],
    ];
    for (const [label, change] of cases) await assertRefused(await signWithServerKey({}, change), label);
  });

  test("typ must be at+jwt (RFC 9068 §4): JWT, missing and id-token-like types are refused", async () => {
    for (const typ of ["JWT", undefined, "jwt", "id_token+jwt", "dpop+jwt"]) {
      await assertRefused(await signWithServerKey({ typ }, {}), `typ ${String(typ)}`);
    }
    assert.equal((await me(server, await signWithServerKey({ typ: "application/at+jwt" }, {}))).status, 200);
  });

  test("kid injection: traversal, SQL and unknown kids find no key", async () => {
    const kids = [
      "../../../../../../dev/null",
      "/dev/null",
      "' OR '1'='1",
      "x' UNION SELECT 'secret' --",
      "0001; DROP TABLE signing_keys",
      "",
      "a".repeat(5000),
      "kid_that_is_valid_shape_but_unknown_0123456789",
    ];
    for (const kid of kids) {
      const input = `${b64({ alg: "HS256", typ: "at+jwt", kid })}.${b64({ ...claims, jti: randomUUID() })}`;
      // jwt_tool signs these with the empty string or the contents of /dev/null.
      await assertRefused(`${input}.${hs256(input, "")}`, `kid ${kid.slice(0, 30)}`);
    }
    const tables = await server.gatehouse.keyring.jwks();
    assert.ok(tables.keys.length >= 2, "the keyring is intact");
  });

  test("keys named inside the token are ignored: jwk, jku, x5u, x5c headers with an attacker key", async () => {
    const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const attackerJwk = {
      ...attacker.publicKey.export({ format: "jwk" }),
      kid: "attacker-key-000000000000",
      alg: "RS256",
    };
    const headers = [
      { alg: "RS256", typ: "at+jwt", jwk: attackerJwk },
      { alg: "RS256", typ: "at+jwt", kid: attackerJwk.kid, jwk: attackerJwk },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, jwk: attackerJwk },
      { alg: "RS256", typ: "at+jwt", kid: attackerJwk.kid, jku: `${server.url}/.well-known/jwks.json` },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, jku: "https://attacker.example/jwks.json" },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, x5u: "https://attacker.example/cert.pem" },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, x5c: ["MIIBIjAN"] },
    ];
    for (const [i, h] of headers.entries()) {
      const input = `${b64(h)}.${b64({ ...claims, jti: randomUUID() })}`;
      const signature = nodeSign("sha256", Buffer.from(input), attacker.privateKey).toString("base64url");
      await assertRefused(`${input}.${signature}`, `header ${i}`);
    }
  });

  test("only one algorithm per key: PS256 or RS512 with our own RSA key is refused", async () => {
    for (const alg of ["PS256", "RS512", "RS384"]) {
      await assertRefused(await signWithServerKey({ alg }, {}), alg);
    }
  });

  test("strict compact form only: padding, spaces, extra segments, JSON serialisation", async () => {
    const [h, p, s] = parts(valid);
    const variants = [
      `${h}=.${p}.${s}`,
      `${h}.${p}.${s}==`,
      `${h}.${p} .${s}`,
      `${h}.${p}.${s}.`,
      `${h}.${p}.${s}.AAAA.BBBB`,
      `${h}..${s}`,
      JSON.stringify({ protected: h, payload: p, signature: s }),
      `${Buffer.from(h, "base64url").toString("base64")}.${p}.${s}`,
      `${h}.${p}.${s}\u0000`,
    ];
    for (const [i, token] of variants.entries()) {
      const response = await server
        .call("GET", "/auth/me", undefined, {
          key: null,
          headers: { authorization: `Bearer ${token}` },
        })
        .catch(() => null);
      // Some variants are not even valid header values; those never reach the server.
      if (response) assert.equal(response.status, 401, `variant ${i}`);
    }
  });

  test("a crit header (an extension we do not understand) is refused even under a valid signature", async () => {
    const key = await server.gatehouse.keyring.signingKey();
    for (const crit of [["exp"], ["b64"], ["urn:example:x"]]) {
      const h = b64({ alg: key.alg, typ: "at+jwt", kid: key.kid, crit, b64: true, "urn:example:x": 1 });
      const input = `${h}.${b64({ ...claims, jti: randomUUID() })}`;
      const signature = nodeSign("sha256", Buffer.from(input), key.privateKey).toString("base64url");
      await assertRefused(`${input}.${signature}`, `crit ${crit.join(",")}`);
    }
  });

  test("one signature, one spelling: a signature segment with altered spare bits is refused", async () => {
    const [h, p, s] = parts(valid);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 256 bytes in 342 characters: the last one carries 2 bits and 4 spare ones.
    const last = alphabet[alphabet.indexOf(s.slice(-1)) ^ 1];
    const respelled = `${s.slice(0, -1)}${last}`;
    assert.deepEqual(Buffer.from(respelled, "base64url"), Buffer.from(s, "base64url"), "same bytes");
    await assertRefused(`${h}.${p}.${respelled}`, "respelled signature");
  });

  test("a token for another user's id, signed by an attacker key under our kid, is refused", async () => {
    const attacker = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const input = `${b64(header)}.${b64({ ...claims, sub: userId, jti: randomUUID(), scope: "admin" })}`;
    const signature = nodeSign("sha256", Buffer.from(input), attacker.privateKey).toString("base64url");
    await assertRefused(`${input}.${signature}`, "attacker key under our kid");
  });

  test("refusals are audited with the reason the client was not told", async () => {
    await server.gatehouse.audit.flush();
    const events = await server.call("GET", "/v1/audit?action=auth.access_token&limit=100");
    const reasons = new Set(events.body.data.map((e: { detail: { reason: string } }) => e.detail.reason));
    for (const reason of [
      "MALFORMED",
      "ALG_NOT_ALLOWED",
      "BAD_SIGNATURE",
      "UNKNOWN_KEY",
      "WRONG_TYPE",
      "EXPIRED",
      "WRONG_ISSUER",
      "WRONG_AUDIENCE",
      "CLAIM_INVALID",
    ]) {
      assert.ok(reasons.has(reason), `${reason} in ${[...reasons].join(",")}`);
    }
  });
});

describe("ECDSA psychic signatures (CVE-2022-21449) with ES256 enabled", { skip: backend === undefined }, () => {
  let server: TestServer;
  before(async () => {
    if (!backend) return;
    server = await startAuthServer(backend, { env: { GATEHOUSE_JWT_ALG: "ES256" } });
  });
  after(() => server?.close());

  test("ES256 tokens work, and r = s = 0 signatures are refused", async () => {
    const user = await createUser(server);
    const valid = (await login(server, user)).access_token;
    assert.equal(decodeProtectedHeader(valid).alg, "ES256");
    assert.equal((await me(server, valid)).status, 200);
    const [h] = parts(valid);
    const payload = b64({ ...decodeJwt(valid), jti: randomUUID(), scope: "admin" });
    for (const signature of [Buffer.alloc(64), Buffer.from("3006020100020100", "hex")]) {
      const response = await me(server, `${h}.${payload}.${signature.toString("base64url")}`);
      assert.equal(response.status, 401);
    }
  });
});
