/**
 * The attack catalogue of jwt_tool (ticarpi/jwt_tool: -X a alg none, -X k key confusion,
 * -X n null signature, -X i injected jwk, -X s spoofed jku, -I claim tampering, kid
 * injection) and RFC 8725 §2-3, against an API guarded by `requireToken` with tokens from
 * a real Gatehouse. Every forged token gets the same 401: same status, same
 * WWW-Authenticate, same body, whichever check failed.
 */
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign as nodeSign, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import { after, before, describe, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { gatehousePlugin, requireToken } from "../src/fastify.ts";
import type { TokenVerifier } from "../src/index.ts";
import { close, listen } from "./support/gatehouse.ts";
import { b64, segments, startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

const hs256 = (input: string, key: string | Buffer) => createHmac("sha256", key).update(input).digest("base64url");

describe("forged and malformed tokens against requireToken", () => {
  let gh: TokenGatehouse;
  let verifier: TokenVerifier;
  let app: FastifyInstance;
  let valid: string;
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  let reference: { body: string; challenge: string | undefined };
  /** Requests that reached an attacker's JWKS server (must stay 0). */
  let attackerHits = 0;
  let attacker: { server: Server; url: string };

  before(async () => {
    gh = await startTokenGatehouse();
    verifier = gh.verifier();
    app = Fastify({ logger: false });
    await app.register(gatehousePlugin, { tokenVerifier: verifier, realm: "payments" });
    app.get("/payments", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async (request) => ({
      sub: request.gatehouseToken?.sub,
    }));
    valid = (await gh.signIn({ scopes: ["payments:read"] })).accessToken;
    header = decodeProtectedHeader(valid) as Record<string, unknown>;
    claims = decodeJwt(valid) as Record<string, unknown>;
    const server = createServer((_request, response) => {
      attackerHits++;
      response.writeHead(404).end();
    });
    attacker = { server, url: await listen(server) };
    const refused = await call("x.y.z");
    reference = { body: refused.body, challenge: refused.challenge };
  });
  after(async () => {
    await app.close();
    await close(attacker.server);
    await gh.close();
  });

  async function call(token: string) {
    const response = await app.inject({
      method: "GET",
      url: "/payments",
      headers: { authorization: `Bearer ${token}` },
    });
    const challenge = response.headers["www-authenticate"];
    return {
      status: response.statusCode,
      body: response.body,
      challenge: typeof challenge === "string" ? challenge : undefined,
    };
  }

  async function assertRefused(token: string, label: string) {
    const response = await call(token);
    assert.equal(response.status, 401, `${label}: status ${response.status}`);
    assert.equal(response.challenge, 'Bearer realm="payments", error="invalid_token"', label);
    assert.equal(response.body, reference.body, `${label}: body differs`);
    const result = await verifier.verify(token);
    assert.equal(result.valid, false, label);
    return result.valid ? null : result.code === "INVALID_TOKEN" ? result.reason : result.code;
  }

  test("the reference refusal is the bare INVALID_TOKEN problem, and the real token passes", async () => {
    assert.deepEqual(JSON.parse(reference.body), {
      type: "urn:gatehouse:error:INVALID_TOKEN",
      title: "The access token is not valid",
      status: 401,
      detail: "A valid access token is required: send it as `Authorization: Bearer <token>`.",
      code: "INVALID_TOKEN",
    });
    assert.equal((await call(valid)).status, 200);
    assert.equal((await call(await gh.resign(valid, {}))).status, 200, "the re-signing harness is sound");
  });

  test("alg none in every casing, with empty, original and junk signatures", async () => {
    const [, payload, signature] = segments(valid);
    for (const alg of ["none", "None", "NONE", "nOnE"]) {
      const h = b64({ ...header, alg });
      for (const s of ["", signature, b64("x")]) await assertRefused(`${h}.${payload}.${s}`, `alg ${alg}`);
    }
  });

  test("key confusion: HS256 keyed with the RS256 public key (PEM, PKCS#1, DER and JWK forms)", async () => {
    const { jwk, key } = await gh.publicKeyOf(valid);
    const forms: Array<string | Buffer> = [
      key.export({ format: "pem", type: "spki" }).toString(),
      key.export({ format: "pem", type: "pkcs1" }).toString(),
      key.export({ format: "der", type: "spki" }),
      JSON.stringify(jwk),
    ];
    for (const [i, secret] of forms.entries()) {
      const input = `${b64({ ...header, alg: "HS256" })}.${b64({ ...claims, jti: randomUUID() })}`;
      assert.equal(await assertRefused(`${input}.${hs256(input, secret)}`, `form ${i}`), "ALG_NOT_ALLOWED");
    }
  });

  test("another RSA algorithm with our own key (PS256, RS384, RS512) is refused: the list is pinned", async () => {
    for (const alg of ["PS256", "RS384", "RS512"]) {
      assert.equal(await assertRefused(await gh.resign(valid, { header: { alg } }), alg), "ALG_NOT_ALLOWED");
    }
  });

  test("null and empty signatures", async () => {
    const [h, p] = segments(valid);
    for (const signature of ["", "AA", "AAAA", b64(Buffer.alloc(256))]) {
      await assertRefused(`${h}.${p}.${signature}`, `signature "${signature.slice(0, 8)}"`);
    }
  });

  test("ECDSA psychic signatures (r = s = 0) under ES256 are refused", async () => {
    const h = b64({ ...header, alg: "ES256" });
    const p = b64({ ...claims, jti: randomUUID() });
    for (const signature of [Buffer.alloc(64), Buffer.from("3006020100020100", "hex")]) {
      await assertRefused(`${h}.${p}.${signature.toString("base64url")}`, "psychic");
    }
  });

  test("claim tampering under the original signature: exp, aud, iss, sub, scope", async () => {
    const [h, , s] = segments(valid);
    const tampered: Array<[string, Record<string, unknown>]> = [
      ["exp", { exp: Math.floor(Date.now() / 1000) + 86400 * 365 }],
      ["aud", { aud: "https://evil.example" }],
      ["iss", { iss: "https://evil.example" }],
      ["sub", { sub: "usr_000000000000admin" }],
      ["scope", { scope: "payments:read admin" }],
    ];
    for (const [label, change] of tampered) {
      assert.equal(await assertRefused(`${h}.${b64({ ...claims, ...change })}.${s}`, label), "BAD_SIGNATURE");
    }
  });

  test("claims checked under a valid signature: aud, iss, exp, nbf, iat, lifetime, required claims, typ", async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: Array<[string, { header?: Record<string, unknown>; claims?: Record<string, unknown> }]> = [
      ["wrong aud", { claims: { aud: "https://other.example" } }],
      ["aud list without ours", { claims: { aud: ["https://other.example"] } }],
      ["wrong iss", { claims: { iss: "https://evil.example" } }],
      ["expired", { claims: { iat: now - 3000, exp: now - 1800 } }],
      ["not yet valid", { claims: { nbf: now + 600 } }],
      ["issued in the future", { claims: { iat: now + 600, exp: now + 1500 } }],
      ["lives longer than Gatehouse issues", { claims: { exp: now + 86400 } }],
      ["no exp", { claims: { exp: undefined } }],
      ["no iat", { claims: { iat: undefined } }],
      ["no jti", { claims: { jti: undefined } }],
      ["no sub", { claims: { sub: undefined } }],
      ["sub not a string", { claims: { sub: 42 } }],
      ["scope not a string", { claims: { scope: ["payments:read"] } }],
      ["typ JWT", { header: { typ: "JWT" } }],
      ["no typ", { header: { typ: undefined } }],
      ["typ of an ID token", { header: { typ: "id_token+jwt" } }],
    ];
    for (const [label, change] of cases) await assertRefused(await gh.resign(valid, change), label);
  });

  test("kid injection: traversal, SQL, empty, huge and unknown kids find no key", async () => {
    const kids = [
      "../../../../../../dev/null",
      "/dev/null",
      "' OR '1'='1",
      "x' UNION SELECT 'secret' --",
      "",
      "a".repeat(5000),
      "kid_that_is_valid_shape_but_unknown_0123456789",
    ];
    for (const kid of kids) {
      const input = `${b64({ alg: "HS256", typ: "at+jwt", kid })}.${b64({ ...claims, jti: randomUUID() })}`;
      await assertRefused(`${input}.${hs256(input, "")}`, `kid ${kid.slice(0, 30)}`);
      // The same under RS256, so the kid itself is what fails.
      const rs = await gh.resign(valid, { header: { kid } });
      assert.equal(await assertRefused(rs, `RS256 kid ${kid.slice(0, 30)}`), "UNKNOWN_KEY");
    }
    const noKid = await gh.resign(valid, { header: { kid: undefined } });
    assert.equal(await assertRefused(noKid, "no kid"), "UNKNOWN_KEY");
  });

  test("keys named inside the token are never used: jwk, jku, x5u, x5c with an attacker key", async () => {
    const evil = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const evilJwk = { ...evil.publicKey.export({ format: "jwk" }), kid: "attacker-key-000000000000", alg: "RS256" };
    const jku = `${attacker.url}/.well-known/jwks.json`;
    const headers = [
      { alg: "RS256", typ: "at+jwt", jwk: evilJwk },
      { alg: "RS256", typ: "at+jwt", kid: evilJwk.kid, jwk: evilJwk },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, jwk: evilJwk },
      { alg: "RS256", typ: "at+jwt", kid: evilJwk.kid, jku },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, jku },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, x5u: `${attacker.url}/cert.pem` },
      { alg: "RS256", typ: "at+jwt", kid: header.kid, x5c: ["MIIBIjAN"] },
    ];
    for (const [i, h] of headers.entries()) {
      const input = `${b64(h)}.${b64({ ...claims, jti: randomUUID(), scope: "payments:read admin" })}`;
      const signature = nodeSign("sha256", Buffer.from(input), evil.privateKey).toString("base64url");
      await assertRefused(`${input}.${signature}`, `header ${i}`);
    }
    assert.equal(attackerHits, 0, "the attacker's URLs were never fetched");
  });

  test("strict compact form only: padding, spaces, extra segments, JSON serialisation, base64 (not url)", async () => {
    const [h, p, s] = segments(valid);
    const variants = [
      `${h}=.${p}.${s}`,
      `${h}.${p}=.${s}`,
      `${h}.${p}.${s}=`,
      `${h}.${p}.${s}==`,
      `${h}.${p} .${s}`,
      `${h}.${p}.${s}.`,
      `${h}.${p}.${s}.AAAA.BBBB`,
      `${h}..${s}`,
      `${h}.${p}`,
      JSON.stringify({ protected: h, payload: p, signature: s }),
      `${Buffer.from(h, "base64url").toString("base64")}.${p}.${s}`,
      `${h}.${p}.${s.replaceAll("-", "+").replaceAll("_", "/")}`,
      `${h}.${p}.${s}${"A".repeat(9000)}`,
    ];
    for (const [i, token] of variants.entries()) {
      const reason = await assertRefused(token, `variant ${i}`);
      assert.ok(reason === "MALFORMED" || reason === "BAD_SIGNATURE", `variant ${i}: ${reason}`);
    }
  });

  test("a crit header (an extension we do not understand) is refused even under a valid signature", async () => {
    const key = await gh.server.gatehouse.keyring.signingKey();
    for (const crit of [["exp"], ["b64"], ["urn:example:x"]]) {
      const h = b64({ alg: key.alg, typ: "at+jwt", kid: key.kid, crit, b64: true, "urn:example:x": 1 });
      const input = `${h}.${b64({ ...claims, jti: randomUUID() })}`;
      const signature = nodeSign("sha256", Buffer.from(input), key.privateKey).toString("base64url");
      assert.equal(await assertRefused(`${input}.${signature}`, `crit ${crit.join(",")}`), "MALFORMED");
    }
  });

  test("one signature, one spelling: a signature segment with altered spare bits is refused", async () => {
    const [h, p, s] = segments(valid);
    const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // 256 bytes in 342 characters: the last one carries 2 bits and 4 spare ones.
    const last = alphabet[alphabet.indexOf(s.slice(-1)) ^ 1];
    const respelled = `${s.slice(0, -1)}${last}`;
    assert.deepEqual(Buffer.from(respelled, "base64url"), Buffer.from(s, "base64url"), "same bytes");
    assert.equal(await assertRefused(`${h}.${p}.${respelled}`, "respelled signature"), "MALFORMED");
  });

  test("a token under our kid signed by an attacker key is refused", async () => {
    const evil = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const input = `${b64(header)}.${b64({ ...claims, jti: randomUUID(), scope: "payments:read admin" })}`;
    const signature = nodeSign("sha256", Buffer.from(input), evil.privateKey).toString("base64url");
    assert.equal(await assertRefused(`${input}.${signature}`, "attacker key under our kid"), "BAD_SIGNATURE");
  });
});
