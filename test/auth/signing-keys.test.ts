import assert from "node:assert/strict";
import { createPrivateKey, randomBytes, randomUUID } from "node:crypto";
import { chmodSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { decodeJwt, decodeProtectedHeader } from "jose";
import { main } from "../../src/cli/main.ts";
import { ConfigError, loadConfig } from "../../src/config/config.ts";
import { createGatehouse } from "../../src/gatehouse.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { loadMasterKey, MasterKeyError } from "../../src/signing/master-key.ts";
import { open, seal } from "../../src/signing/sealed-box.ts";
import { newSigningKey } from "../../src/signing/signing-key.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import { signCompactJws } from "../../src/tokens/jws-sign.ts";
import { backends, tempDir } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, me, startAuthServer, TEST_MASTER_KEY } from "./support.ts";

const PRIVATE_MEMBERS = ["d", "p", "q", "dp", "dq", "qi", "k", "oth"];

async function jwks(server: TestServer) {
  const response = await server.call("GET", "/.well-known/jwks.json", undefined, { key: null });
  assert.equal(response.status, 200);
  return response as { status: number; headers: Headers; body: { keys: Array<Record<string, unknown>> } };
}

for (const backend of backends()) {
  describe(`signing keyring and JWKS (${backend.name})`, () => {
    const clock = manualClock(Date.now());
    let server: TestServer;
    before(async () => {
      server = await startAuthServer(backend, { clock });
    });
    after(() => server.close());

    test("the JWKS publishes public keys only: current and next, RS256, with kids", async () => {
      const response = await jwks(server);
      assert.match(response.headers.get("content-type") ?? "", /application\/json/);
      assert.equal(response.headers.get("cache-control"), "public, max-age=300");
      const { keys } = response.body;
      assert.equal(keys.length, 2);
      for (const key of keys) {
        assert.deepEqual({ kty: key.kty, alg: key.alg, use: key.use }, { kty: "RSA", alg: "RS256", use: "sig" });
        assert.match(String(key.kid), /^[A-Za-z0-9_-]{43}$/);
        for (const member of PRIVATE_MEMBERS) assert.equal(key[member], undefined, member);
      }
    });

    test("rotation: the next key was published before it signs; the old one stays until its tokens expire", async () => {
      const user = await createUser(server);
      const before = (await jwks(server)).body.keys.map((k) => String(k.kid));
      const oldToken = (await login(server, user)).access_token;
      const oldKid = String(decodeProtectedHeader(oldToken).kid);
      assert.ok(before.includes(oldKid));
      const upcoming = before.find((kid) => kid !== oldKid);
      assert.ok(upcoming);

      const rotated = await server.gatehouse.keyring.rotate({
        actor: "cli",
        ip: null,
        userAgent: null,
        requestId: null,
      });
      assert.ok(rotated);
      assert.equal(rotated.current, upcoming, "the key that signs now is the one published before");
      assert.equal(rotated.retired, oldKid);
      const newToken = (await login(server, user)).access_token;
      assert.equal(decodeProtectedHeader(newToken).kid, upcoming);
      const during = (await jwks(server)).body.keys.map((k) => String(k.kid));
      assert.deepEqual(new Set(during), new Set([oldKid, upcoming, rotated.next]));
      // Tokens signed by the retired key still verify while they live.
      assert.equal((await me(server, oldToken)).status, 200);
      assert.equal((await me(server, newToken)).status, 200);

      // After the old key's last token has expired (15 min + 5 s of leeway), a verifier may
      // still hold one it fetched just before: the key stays published through the margin.
      clock.advance(19 * 60_000);
      assert.equal((await me(server, oldToken)).status, 401, "the old token has expired");
      const margin = (await jwks(server)).body.keys.map((k) => String(k.kid));
      assert.ok(margin.includes(oldKid), "still published until every token it signed has expired, plus margin");
      // Past the last possible expiry of its tokens (15 min + margin), the old key is gone.
      clock.advance(2 * 60_000);
      const later = (await jwks(server)).body.keys.map((k) => String(k.kid));
      assert.deepEqual(new Set(later), new Set([upcoming, rotated.next]));
      assert.equal((await me(server, oldToken)).status, 401);
    });

    test("two rotations racing rotate once", async () => {
      const actor = { actor: "cli", ip: null, userAgent: null, requestId: null };
      const results = await Promise.all([
        server.gatehouse.keyring.rotate(actor),
        server.gatehouse.keyring.rotate(actor),
      ]);
      assert.equal(results.filter((r) => r !== null).length, 1);
      const records = await server.gatehouse.storage.signingKeys.list(clock());
      assert.equal(records.filter((r) => r.state === "current").length, 1);
      assert.equal(records.filter((r) => r.state === "next").length, 1);
    });

    test("private keys are sealed at rest: no PKCS#8 in storage, and the seal is bound to its kid", async () => {
      const records = await server.gatehouse.storage.signingKeys.list(clock());
      const record = records[0];
      assert.ok(record);
      // The stored bytes are not a private key; unsealed with the master key and the kid, they are.
      assert.throws(() => createPrivateKey({ key: record.sealedPrivateKey, format: "der", type: "pkcs8" }));
      const masterKey = Buffer.from(TEST_MASTER_KEY, "base64");
      const der = open(masterKey, record.sealedPrivateKey, record.kid);
      assert.equal(createPrivateKey({ key: der, format: "der", type: "pkcs8" }).asymmetricKeyType, "rsa");
      const other = records[1];
      assert.ok(other);
      assert.throws(() => open(masterKey, record.sealedPrivateKey, other.kid));
      assert.ok(!record.publicJwk.includes('"d"'));
    });

    test("reset: only keys another master key sealed are deleted; a current and next that unseal are kept", async () => {
      const actor = { actor: "cli", ip: null, userAgent: null, requestId: null };
      const kept = (await server.gatehouse.storage.signingKeys.list(clock())).map((r) => r.kid);
      // A retired key sealed under another master key, as if sealed before the key was replaced.
      const foreign = {
        ...newSigningKey("RS256", { masterKey: randomBytes(32), state: "retired", now: clock() }),
        retiredAt: clock(),
        publishUntil: clock() + 60_000,
      };
      await server.gatehouse.storage.signingKeys.replace([], [foreign], null);
      const split = await server.gatehouse.keyring.storedKeysByUnsealing();
      assert.deepEqual(
        split.unreadable.map((r) => r.kid),
        [foreign.kid],
      );
      const reset = await server.gatehouse.keyring.replaceUnreadable(actor);
      assert.deepEqual(reset, { discarded: [foreign.kid], created: [] });
      const after = (await server.gatehouse.storage.signingKeys.list(clock())).map((r) => r.kid);
      assert.deepEqual(after.toSorted(), kept.toSorted());
      assert.deepEqual(await server.gatehouse.keyring.replaceUnreadable(actor), { discarded: [], created: [] });
    });
  });
}

describe("automatic rotation schedule", () => {
  const [backend] = backends();
  test("rotates once the current key has signed for the configured days, not before", { skip: !backend }, async () => {
    if (!backend) return;
    const clock = manualClock(Date.now());
    const server = await startAuthServer(backend, { clock, env: { GATEHOUSE_SIGNING_KEY_ROTATION_DAYS: "1" } });
    try {
      const actor = { actor: "system", ip: null, userAgent: null, requestId: null };
      const before = (await server.gatehouse.keyring.signingKey()).kid;
      assert.equal(await server.gatehouse.keyring.rotateIfDue(actor), false);
      clock.advance(86_400_000 - 60_000);
      assert.equal(await server.gatehouse.keyring.rotateIfDue(actor), false);
      clock.advance(60_000);
      assert.equal(await server.gatehouse.keyring.rotateIfDue(actor), true);
      assert.notEqual((await server.gatehouse.keyring.signingKey()).kid, before);
      assert.equal(await server.gatehouse.keyring.rotateIfDue(actor), false, "the new key starts its own day");
    } finally {
      await server.close();
    }
  });
});

describe("automatic rotation on two nodes", () => {
  for (const backend of backends()) {
    test(`a node whose keyring is cached does not rotate again the key another node just made current (${backend.name})`, async () => {
      const clock = manualClock(Date.now());
      const env = { GATEHOUSE_SIGNING_KEY_ROTATION_DAYS: "1" };
      const nodeA = await startAuthServer(backend, { clock, env });
      try {
        // Node B: a second Gatehouse on the same store, its keyring loaded now.
        const nodeB = createGatehouse({
          config: nodeA.gatehouse.config,
          storage: nodeA.gatehouse.storage,
          clock,
          background: false,
        });
        await nodeB.keyring.start();
        const first = (await nodeB.keyring.signingKey()).kid;
        const actor = { actor: "system", ip: null, userAgent: null, requestId: null };
        clock.advance(86_400_000);
        // B signs a token now: its keyring is fresh (reloaded), with the first key current.
        assert.equal((await nodeB.keyring.signingKey()).kid, first);
        assert.equal(await nodeA.gatehouse.keyring.rotateIfDue(actor), true);
        const second = (await nodeA.gatehouse.keyring.signingKey()).kid;
        clock.advance(2_000);
        // B still holds the first key as current (its keyring reloads every 30 s).
        assert.equal(await nodeB.keyring.rotateIfDue(actor), false);
        const current = (await nodeA.gatehouse.storage.signingKeys.list(clock())).filter((r) => r.state === "current");
        assert.deepEqual(
          current.map((r) => r.kid),
          [second],
        );
        assert.notEqual(second, first);
      } finally {
        await nodeA.close();
      }
    });
  }
});

describe("a retired key on a node that only verifies", () => {
  for (const backend of backends()) {
    test(`stops verifying once its publication ends, though another node retired it (${backend.name})`, async () => {
      const clock = manualClock(Date.now());
      const nodeA = await startAuthServer(backend, { clock });
      try {
        const user = await createUser(nodeA);
        const issued = (await login(nodeA, user)).access_token;
        // The key that signed it, private half and all: what an attacker holds once it leaks.
        const leaked = await nodeA.gatehouse.keyring.signingKey();
        assert.equal(decodeProtectedHeader(issued).kid, leaked.kid);
        // Node B retires it (as the CLI or B's automatic rotation would). Node A only
        // verifies from then on: no sign-in, no refresh, no JWKS request reaches it.
        const nodeB = createGatehouse({
          config: nodeA.gatehouse.config,
          storage: nodeA.gatehouse.storage,
          clock,
          background: false,
        });
        const rotated = await nodeB.keyring.rotate({ actor: "cli", ip: null, userAgent: null, requestId: null });
        assert.equal(rotated?.retired, leaked.kid);
        // Past the end of its publication (its last token's life plus the margin).
        clock.advance(21 * 60_000);
        const iat = Math.floor(clock() / 1000);
        const minted = await signCompactJws(
          leaked.alg,
          leaked.privateKey,
          { typ: "at+jwt", kid: leaked.kid },
          { ...decodeJwt(issued), iat, exp: iat + 900, jti: randomUUID() },
        );
        assert.equal((await me(nodeA, minted)).status, 401, "a token signed by a retired, unpublished key");
      } finally {
        await nodeA.close();
      }
    });
  }
});

describe("sealed boxes (AES-256-GCM)", () => {
  const key = Buffer.alloc(32, 7);
  test("round trip, and any change to key, context or bytes is refused", () => {
    const box = seal(key, Buffer.from("private key bytes"), "kid-1");
    assert.equal(open(key, box, "kid-1").toString(), "private key bytes");
    assert.throws(() => open(Buffer.alloc(32, 8), box, "kid-1"));
    assert.throws(() => open(key, box, "kid-2"), "a box moved to another kid does not open");
    const flipped = Buffer.from(box);
    flipped[flipped.length - 1] = (flipped.at(-1) ?? 0) ^ 1;
    assert.throws(() => open(key, flipped, "kid-1"));
    assert.notDeepEqual(seal(key, Buffer.from("x"), "k"), seal(key, Buffer.from("x"), "k"), "fresh IV each time");
  });
});

describe("master key sources", () => {
  test("embedded default: <dataDir>/master.key is created with mode 0600 and reused", () => {
    const dir = tempDir();
    try {
      const config = { dataDir: join(dir, "data"), auth: { masterKey: null } };
      const first = loadMasterKey(config, { ifMissing: "create" });
      assert.equal(first.length, 32);
      assert.equal(statSync(join(dir, "data", "master.key")).mode & 0o777, 0o600);
      assert.deepEqual(loadMasterKey(config, { ifMissing: "create" }), first);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a key file readable by others is refused, as is a key of the wrong size", () => {
    const dir = tempDir();
    try {
      const file = join(dir, "key");
      writeFileSync(file, Buffer.alloc(32, 1).toString("base64"));
      chmodSync(file, 0o644);
      assert.throws(
        () => loadMasterKey({ dataDir: dir, auth: { masterKey: { file } } }, { ifMissing: "create" }),
        MasterKeyError,
      );
      chmodSync(file, 0o600);
      assert.equal(loadMasterKey({ dataDir: dir, auth: { masterKey: { file } } }, { ifMissing: "create" }).length, 32);
      writeFileSync(file, Buffer.alloc(16, 1).toString("base64"));
      assert.throws(
        () => loadMasterKey({ dataDir: dir, auth: { masterKey: { file } } }, { ifMissing: "create" }),
        MasterKeyError,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("GATEHOUSE_MASTER_KEY must be 32 bytes of base64", () => {
    assert.throws(
      () => loadConfig({ GATEHOUSE_MASTER_KEY: Buffer.alloc(16).toString("base64") }),
      (error: unknown) =>
        error instanceof ConfigError && error.problems.some((p) => p.includes("GATEHOUSE_MASTER_KEY")),
    );
  });
});

describe("algorithm choice", () => {
  test("HS256 refuses to start without a secret of at least 256 bits", () => {
    for (const secret of [undefined, Buffer.alloc(31, 1).toString("base64url"), "short"]) {
      assert.throws(
        () => loadConfig({ GATEHOUSE_JWT_ALG: "HS256", ...(secret ? { GATEHOUSE_JWT_HS256_SECRET: secret } : {}) }),
        (error: unknown) => error instanceof ConfigError && error.problems.some((p) => p.includes("256 bits")),
      );
    }
    assert.throws(() => loadConfig({ GATEHOUSE_JWT_ALG: "none" }), ConfigError);
    assert.throws(() => loadConfig({ GATEHOUSE_JWT_ALG: "HS512" }), ConfigError);
  });

  const [backend] = backends();
  test("HS256 with a 256-bit secret signs and verifies, and publishes nothing", { skip: !backend }, async () => {
    if (!backend) return;
    const server = await startAuthServer(backend, {
      env: { GATEHOUSE_JWT_ALG: "HS256", GATEHOUSE_JWT_HS256_SECRET: Buffer.alloc(32, 9).toString("base64url") },
    });
    try {
      const user = await createUser(server);
      const token = (await login(server, user)).access_token;
      assert.equal(decodeProtectedHeader(token).alg, "HS256");
      assert.equal((await me(server, token)).status, 200);
      assert.deepEqual((await jwks(server)).body, { keys: [] });
    } finally {
      await server.close();
    }
  });

  test("EdDSA (Ed25519) signs and verifies and is published as an OKP key", { skip: !backend }, async () => {
    if (!backend) return;
    const server = await startAuthServer(backend, { env: { GATEHOUSE_JWT_ALG: "EdDSA" } });
    try {
      const user = await createUser(server);
      const token = (await login(server, user)).access_token;
      assert.equal(decodeProtectedHeader(token).alg, "EdDSA");
      assert.equal((await me(server, token)).status, 200);
      const keys = (await jwks(server)).body.keys;
      assert.ok(keys.every((k) => k.kty === "OKP" && k.crv === "Ed25519" && k.d === undefined));
    } finally {
      await server.close();
    }
  });
});

describe("gatehouse keys rotate-signing (CLI)", () => {
  test("rotates on the store the environment names, using the embedded master key file", async () => {
    const dir = tempDir();
    try {
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: { GATEHOUSE_DATA_DIR: dir } };
      assert.equal(await main(["init", "--json"], io), 0, err.join("\n"));
      out.length = 0;
      // The next key made by init was published a moment ago: refused without --force.
      assert.equal(await main(["keys", "rotate-signing", "--json"], io), 1);
      assert.match(err.join("\n"), /published 0 s ago.*--force/);
      assert.equal(out.length, 0);
      err.length = 0;
      assert.equal(await main(["keys", "rotate-signing", "--json", "--force"], io), 0, err.join("\n"));
      const first = JSON.parse(out[0] ?? "{}");
      assert.equal(await main(["keys", "rotate-signing", "--json", "--force"], io), 0, err.join("\n"));
      const second = JSON.parse(out[1] ?? "{}");
      assert.equal(second.current, first.next, "the published next key is the one promoted");
      assert.equal(second.retired, first.current);
      assert.equal(statSync(join(dir, "master.key")).mode & 0o777, 0o600);
      const storage = SqliteStorage.open(join(dir, "gatehouse.db"));
      try {
        const states = (await storage.signingKeys.list(Date.now())).map((r) => r.state).sort();
        assert.deepEqual(states, ["current", "next", "retired", "retired"]);
      } finally {
        await storage.close();
      }
      // A different master key cannot unseal the stored keys: the CLI fails loudly.
      writeFileSync(join(dir, "master.key"), `${Buffer.alloc(32, 3).toString("base64")}\n`, { mode: 0o600 });
      // One line for the operator, no stack trace (runCommand reports a MasterKeyError).
      err.length = 0;
      assert.equal(await main(["keys", "rotate-signing"], io), 1);
      assert.equal(err.length, 1, err.join("\n"));
      assert.match(
        err[0] ?? "",
        /^gatehouse keys rotate-signing: cannot unseal signing key .*not the one it was sealed with/,
      );
      assert.ok(readFileSync(join(dir, "master.key"), "utf8").length > 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("HS256 deployments are told the secret is rotated by configuration", async () => {
    const dir = tempDir();
    try {
      const err: string[] = [];
      const io = {
        out: () => {},
        err: (t: string) => err.push(t),
        env: {
          GATEHOUSE_DATA_DIR: dir,
          GATEHOUSE_JWT_ALG: "HS256",
          GATEHOUSE_JWT_HS256_SECRET: Buffer.alloc(32, 5).toString("base64url"),
        },
      };
      assert.equal(await main(["init", "--json"], io), 0, err.join("\n"));
      assert.equal(await main(["keys", "rotate-signing"], io), 1);
      assert.match(err.join("\n"), /GATEHOUSE_JWT_HS256_SECRET/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
