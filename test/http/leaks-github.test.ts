import assert from "node:assert/strict";
import { createHash, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

function p256() {
  return generateKeyPairSync("ec", { namedCurve: "prime256v1" });
}

function publicKeysDocument(keys: Array<{ id: string; publicKey: KeyObject; current?: boolean }>): string {
  return JSON.stringify({
    public_keys: keys.map((k) => ({
      key_identifier: k.id,
      key: k.publicKey.export({ type: "spki", format: "pem" }),
      is_current: k.current ?? true,
    })),
  });
}

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

interface Report {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: answers are read field by field and asserted.
  body: any;
}

/** Posts a report the way GitHub does: the signature covers the exact body bytes. */
async function report(
  server: TestServer,
  body: string,
  signing: { id: string; privateKey: KeyObject } | null,
  options: { signedBody?: string; headers?: Record<string, string> } = {},
): Promise<Report> {
  const headers: Record<string, string> = { "content-type": "application/json", ...options.headers };
  if (signing) {
    headers["github-public-key-identifier"] = signing.id;
    headers["github-public-key-signature"] = sign(
      "sha256",
      Buffer.from(options.signedBody ?? body),
      signing.privateKey,
    ).toString("base64");
  }
  const response = await fetch(`${server.url}/v1/leaks/github`, { method: "POST", headers, body });
  const text = await response.text();
  return { status: response.status, headers: response.headers, text, body: text ? JSON.parse(text) : null };
}

for (const backend of backends()) {
  describe(`GitHub secret scanning partner endpoint, configured keys (${backend.name})`, () => {
    const github = { id: "90a421169f0a406205f1563a953312f0be898d3c7b6c06b681aa86a874555f4a", ...p256() };
    const retired = { id: "bcb53661c06b4728e59d897fb6165d5c9cda0fd9cdf9d09ead458168deb7518c", ...p256() };
    const stranger = { id: github.id, ...p256() }; // same identifier, another key
    let server: TestServer;
    before(async () => {
      server = await startServer(backend, {
        env: {
          GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS: publicKeysDocument([
            { id: github.id, publicKey: github.publicKey },
            { id: retired.id, publicKey: retired.publicKey, current: false },
          ]),
        },
      });
    });
    after(() => server.close());

    const newKey = async (name: string) => {
      const created = await server.call("POST", "/v1/keys", { name, scopes: [] });
      assert.equal(created.status, 201);
      return { id: created.body.id as string, key: created.body.key as string };
    };
    const verify = async (key: string) => (await server.call("POST", "/v1/keys/verify", { key })).body;
    const leakEvents = async () => {
      const audit = await server.call("GET", "/v1/audit?action=key.leak_report&limit=100");
      assert.equal(audit.status, 200);
      return audit.body.data as Array<{
        actor: string;
        outcome: string;
        targetId: string | null;
        detail: Record<string, unknown>;
      }>;
    };

    test("a live key reported is revoked at once and labelled true_positive by its hash", async () => {
      const { id, key } = await newKey("leaked");
      assert.equal((await verify(key)).valid, true);
      const body = JSON.stringify([
        { token: key, type: "gatehouse_api_key", url: "https://github.com/o/r/blob/x/.env", source: "content" },
      ]);
      const r = await report(server, body, github);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, [{ token_hash: sha256(key), token_type: "gatehouse_api_key", label: "true_positive" }]);
      assert.ok(!r.text.includes(key), "the answer never carries the raw token");
      assert.deepEqual(await verify(key), { valid: false, code: "REVOKED" });
      const record = await server.call("GET", `/v1/keys/${id}`);
      assert.equal(record.body.status, "revoked");
      assert.match(record.body.revokedReason, /leak/);
      const events = await leakEvents();
      const event = events.find((e) => e.targetId === id);
      assert.ok(event);
      assert.equal(event.actor, "github");
      assert.equal(event.outcome, "success");
      assert.equal(event.detail.result, "revoked");
      assert.equal(event.detail.url, "https://github.com/o/r/blob/x/.env");
      const revokes = await server.call("GET", `/v1/audit?action=key.revoke&targetId=${id}`);
      assert.equal(revokes.body.data.length, 1);
      assert.equal(revokes.body.data[0].actor, "github");
      const everything = await server.call("GET", "/v1/audit?limit=100");
      assert.ok(!JSON.stringify(everything.body).includes(key), "the audit log never holds the token");
    });

    test("where a report says a key was found is audited with text storage cannot keep replaced", async () => {
      const { id, key } = await newKey("found at an odd url");
      const unknown = generateKey("gate");
      const odd = { url: "https://github.com/o/r/blob/x/\ud800.env", source: "content\u0000x" };
      const r = await report(
        server,
        JSON.stringify([
          { token: key, ...odd },
          { token: unknown, ...odd },
        ]),
        github,
      );
      assert.equal(r.status, 200, r.text);
      assert.equal((await verify(key)).code, "REVOKED");
      const events = await leakEvents();
      for (const event of [
        events.find((e) => e.targetId === id),
        events.find((e) => e.detail.tokenHash === sha256(unknown)),
      ]) {
        assert.equal(event?.detail.url, "https://github.com/o/r/blob/x/\ufffd.env");
        assert.equal(event?.detail.source, "content\ufffdx");
      }
    });

    test("an unknown token is false_positive; an already revoked key is still true_positive", async () => {
      const revoked = await newKey("revoked before");
      await server.call("POST", `/v1/keys/${revoked.id}/revoke`, { reason: "rotated out" });
      const unknownWellFormed = generateKey("gate");
      const tokens = [unknownWellFormed, "gate_not_even_close", "ghp_somethingElse", revoked.key];
      const r = await report(server, JSON.stringify(tokens.map((token) => ({ token, type: "t" }))), github);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(
        r.body,
        tokens.map((token, i) => ({
          token_hash: sha256(token),
          token_type: "t",
          label: i === 3 ? "true_positive" : "false_positive",
        })),
      );
      for (const token of tokens) assert.ok(!r.text.includes(token));
      // The revocation reason of the earlier revoke is kept.
      const record = await server.call("GET", `/v1/keys/${revoked.id}`);
      assert.equal(record.body.revokedReason, "rotated out");
      const events = await leakEvents();
      const mine = events.find((e) => e.targetId === revoked.id);
      assert.equal(mine?.detail.result, "already_inactive");
      const unknown = events.find((e) => e.detail.tokenHash === sha256(unknownWellFormed));
      assert.equal(unknown?.outcome, "failure");
      assert.ok(!JSON.stringify(events).includes(unknownWellFormed));
    });

    test("a key reported twice in one batch is revoked once", async () => {
      const { id, key } = await newKey("twice");
      const r = await report(server, JSON.stringify([{ token: key }, { token: key }]), github);
      assert.deepEqual(
        r.body.map((v: { label: string }) => v.label),
        ["true_positive", "true_positive"],
      );
      const revokes = await server.call("GET", `/v1/audit?action=key.revoke&targetId=${id}`);
      assert.equal(revokes.body.data.length, 1);
    });

    test("a key listed as not current at GitHub still verifies (rotation overlap)", async () => {
      const { key } = await newKey("retired signer");
      const r = await report(server, JSON.stringify([{ token: key }]), retired);
      assert.equal(r.status, 200);
      assert.equal((await verify(key)).code, "REVOKED");
    });

    test("bad signatures are 401 SIGNATURE_INVALID and revoke nothing", async () => {
      const { id, key } = await newKey("not leaked");
      const body = JSON.stringify([{ token: key, type: "gatehouse_api_key" }]);
      const before = (await leakEvents()).length;
      const attempts: Array<[string, Promise<Report>]> = [
        ["signed by another key", report(server, body, stranger)],
        ["unknown key identifier", report(server, body, { id: "nope", privateKey: github.privateKey })],
        ["no headers", report(server, body, null)],
        ["no signature header", report(server, body, null, { headers: { "github-public-key-identifier": github.id } })],
        [
          "no identifier header",
          report(server, body, null, {
            headers: {
              "github-public-key-signature": sign("sha256", Buffer.from(body), github.privateKey).toString("base64"),
            },
          }),
        ],
        [
          "body changed after signing",
          report(server, body, github, { signedBody: body.replace(key, generateKey("gate")) }),
        ],
        ["one byte appended", report(server, `${body} `, github, { signedBody: body })],
        [
          "signature not base64 DER",
          report(server, body, null, {
            headers: { "github-public-key-identifier": github.id, "github-public-key-signature": "!!!!" },
          }),
        ],
        [
          "empty signature",
          report(server, body, null, {
            headers: { "github-public-key-identifier": github.id, "github-public-key-signature": "" },
          }),
        ],
        [
          "a P-384 key under a known identifier",
          report(server, body, {
            id: github.id,
            privateKey: generateKeyPairSync("ec", { namedCurve: "secp384r1" }).privateKey,
          }),
        ],
      ];
      const details = new Set<string>();
      for (const [label, attempt] of attempts) {
        const r = await attempt;
        assert.equal(r.status, 401, `${label}: ${r.text}`);
        assert.equal(r.body.code, "SIGNATURE_INVALID", label);
        assert.ok(!r.text.includes(key));
        details.add(r.body.detail);
      }
      assert.ok(details.size <= 2, "failures say one of two things: headers missing, or it does not verify");
      assert.equal((await verify(key)).valid, true, "nothing was revoked");
      const record = await server.call("GET", `/v1/keys/${id}`);
      assert.equal(record.body.status, "active");
      assert.equal((await leakEvents()).length, before, "unverified reports are not processed");
      // Regression: a refused report left no trace in the audit log, unlike every other
      // failed authentication; each is now one event, without the body it carried.
      const refused = await server.call("GET", "/v1/audit?action=auth.github_signature&limit=100");
      assert.equal(refused.status, 200);
      const events = refused.body.data as Array<{ actor: string; outcome: string; detail: Record<string, unknown> }>;
      assert.equal(events.length, attempts.length);
      assert.ok(events.every((e) => e.actor === "anonymous" && e.outcome === "failure"));
      assert.deepEqual(
        events.map((e) => e.detail.reason).sort(),
        [...Array(3).fill("MISSING"), ...Array(attempts.length - 3).fill("NOT_VERIFIED")].sort(),
      );
      assert.ok(events.some((e) => e.detail.keyIdentifier === "nope"));
      assert.ok(!JSON.stringify(events).includes(key), "no token of the report is kept");
    });

    test("a signed body that is not a report is 400, and nothing is revoked", async () => {
      for (const [body, code] of [
        ["[{", "MALFORMED_JSON"],
        ['{"token":"x"}', "VALIDATION_FAILED"],
        ['[{"token":""}]', "VALIDATION_FAILED"],
        ['[{"token":5}]', "VALIDATION_FAILED"],
      ] as const) {
        const r = await report(server, body, github);
        assert.equal(r.status, 400, body);
        assert.equal(r.body.code, code, body);
      }
      // Over the endpoint's own limit (1 MiB, not the API's 64 KiB): 413 naming it.
      const big = `[${'{"token":"x","type":"t","url":"u","source":"s"},'.repeat(24_000)}{"token":"x"}]`;
      assert.ok(big.length > 1024 * 1024);
      const over = await report(server, big, github);
      assert.equal(over.status, 413);
      assert.match(over.body.detail, /\(at most 1048576 bytes\)/);
    });
  });

  describe(`GitHub secret scanning partner endpoint, keys fetched from a URL (${backend.name})`, () => {
    const github = { id: "current-key-id", ...p256() };
    let keysServer: Server;
    let fetches = 0;
    const keysStatus = 200;
    let server: TestServer;
    before(async () => {
      keysServer = createServer((request, response) => {
        fetches++;
        assert.equal(request.url, "/meta/public_keys/secret_scanning");
        if (keysStatus !== 200) {
          response.writeHead(keysStatus).end();
          return;
        }
        response.writeHead(200, { "content-type": "application/json" });
        response.end(publicKeysDocument([{ id: github.id, publicKey: github.publicKey }]));
      });
      await new Promise<void>((resolve) => keysServer.listen(0, "127.0.0.1", resolve));
      const { port } = keysServer.address() as AddressInfo;
      server = await startServer(backend, {
        env: {
          GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: `http://127.0.0.1:${port}/meta/public_keys/secret_scanning`,
        },
      });
    });
    after(async () => {
      await server.close();
      await new Promise((resolve) => keysServer.close(resolve));
    });

    test("the public keys are fetched once and a live key is revoked", async () => {
      const created = await server.call("POST", "/v1/keys", { name: "via url", scopes: [] });
      const key: string = created.body.key;
      const r = await report(server, JSON.stringify([{ token: key, type: "gatehouse_api_key" }]), github);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.body, [{ token_hash: sha256(key), token_type: "gatehouse_api_key", label: "true_positive" }]);
      assert.equal((await server.call("POST", "/v1/keys/verify", { key })).body.code, "REVOKED");
      assert.equal(fetches, 1);
      // Known identifier: served from memory.
      await report(server, JSON.stringify([{ token: generateKey("gate") }]), github);
      assert.equal(fetches, 1);
      // Unknown identifier: at most one refetch a minute, so nobody can make us fetch per request.
      for (let i = 0; i < 3; i++) {
        const unknown = await report(server, "[]", { id: `rotated-${i}`, privateKey: github.privateKey });
        assert.equal(unknown.status, 401);
        assert.equal(unknown.body.code, "SIGNATURE_INVALID");
      }
      assert.equal(fetches, 1);
    });
  });

  describe(`GitHub secret scanning partner endpoint, keys URL failing (${backend.name})`, () => {
    let keysServer: Server;
    let fetches = 0;
    let server: TestServer;
    before(async () => {
      keysServer = createServer((_request, response) => {
        fetches++;
        response.writeHead(500).end("down");
      });
      await new Promise<void>((resolve) => keysServer.listen(0, "127.0.0.1", resolve));
      const { port } = keysServer.address() as AddressInfo;
      server = await startServer(backend, {
        env: { GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: `http://127.0.0.1:${port}/keys` },
      });
    });
    after(async () => {
      await server.close();
      await new Promise((resolve) => keysServer.close(resolve));
    });

    test("when GitHub's keys cannot be loaded the report is refused with Retry-After, nothing revoked", async () => {
      const created = await server.call("POST", "/v1/keys", { name: "k", scopes: [] });
      const github = { id: "x", ...p256() };
      const r = await report(server, JSON.stringify([{ token: created.body.key }]), github);
      assert.equal(r.status, 503);
      assert.equal(r.body.code, "UPSTREAM_UNAVAILABLE");
      assert.equal(r.headers.get("retry-after"), "60");
      assert.ok(!r.text.includes("down"));
      assert.equal((await server.call("POST", "/v1/keys/verify", { key: created.body.key })).body.valid, true);
      // While GitHub is down, reports do not each cause a fetch: one a minute at most.
      const again = await Promise.all(
        [1, 2, 3].map(() => report(server, JSON.stringify([{ token: created.body.key }]), github)),
      );
      assert.deepEqual(
        again.map((a) => a.status),
        [503, 503, 503],
      );
      assert.equal(fetches, 1);
    });
  });
}
