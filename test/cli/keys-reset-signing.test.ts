import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { test } from "node:test";
import { STRONG_PASSWORD } from "../auth/support.ts";
import { tempDir } from "../support/backends.ts";
import { runCli, startNode } from "../support/processes.ts";

// biome-ignore lint/suspicious/noExplicitAny: answers are read field by field and asserted.
type Json = any;

async function call(
  url: string,
  path: string,
  init: { method?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Json; headers: Headers }> {
  const response = await fetch(`${url}${path}`, {
    method: init.method ?? "GET",
    headers: { ...(init.body !== undefined ? { "content-type": "application/json" } : {}), ...init.headers },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
}

test("keys reset-signing: after the master key is lost, serve starts again; refresh tokens and sessions survive, access tokens do not", async () => {
  const dir = tempDir();
  try {
    const lost = randomBytes(32).toString("base64");
    const replacement = randomBytes(32).toString("base64");
    const init = await runCli(["init", "--json"], { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: lost });
    assert.equal(init.code, 0, init.stderr);
    const admin: string = JSON.parse(init.stdout).adminKey;
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

    // Under the master key about to be lost: a user with an access token, a refresh token and a cookie session.
    const before = await startNode({ GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: lost });
    const email = `reset-${randomBytes(4).toString("hex")}@example.com`;
    const created = await call(before.url, "/v1/users", {
      method: "POST",
      headers: bearer(admin),
      body: { email, password: STRONG_PASSWORD },
    });
    assert.equal(created.status, 201);
    const tokens = await call(before.url, "/auth/login", {
      method: "POST",
      body: { email, password: STRONG_PASSWORD },
    });
    assert.equal(tokens.status, 200);
    const session = await call(before.url, "/auth/session", {
      method: "POST",
      body: { email, password: STRONG_PASSWORD },
    });
    assert.equal(session.status, 204);
    const cookie = (session.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    assert.match(cookie, /^__Host-gatehouse_session=/);
    const oldKids = (await call(before.url, "/.well-known/jwks.json")).body.keys.map((key: { kid: string }) => key.kid);
    assert.equal(oldKids.length, 2);
    assert.equal(await before.stop(), 0);

    const env = { GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: replacement };
    await assert.rejects(startNode(env), /master key is not the one/);

    // Without --yes: what would be deleted and what follows, and nothing changes.
    const dry = await runCli(["keys", "reset-signing"], env);
    assert.equal(dry.code, 1);
    assert.equal(dry.stdout, "");
    assert.match(dry.stderr, /^2 of 2 signing keys cannot be unsealed with the master key from GATEHOUSE_MASTER_KEY:/);
    for (const kid of oldKids) assert.ok(dry.stderr.includes(kid), kid);
    assert.match(dry.stderr, /Every access token those keys signed stops verifying/);
    assert.match(dry.stderr, /Refresh tokens and cookie sessions are records in storage/);
    assert.match(dry.stderr, /Nothing was changed\. Run again with --yes to do it\.\n$/);
    await assert.rejects(startNode(env), /master key is not the one/, "the dry run changed nothing");

    const reset = await runCli(["keys", "reset-signing", "--yes", "--json"], env);
    assert.equal(reset.code, 0, reset.stderr);
    const answer = JSON.parse(reset.stdout);
    assert.deepEqual(answer.discarded.toSorted(), oldKids.toSorted());
    assert.deepEqual(
      answer.created.map((key: { state: string }) => key.state),
      ["current", "next"],
    );

    const after = await startNode(env);
    try {
      const published = (await call(after.url, "/.well-known/jwks.json")).body.keys.map(
        (key: { kid: string }) => key.kid,
      );
      assert.deepEqual(published.toSorted(), answer.created.map((key: { kid: string }) => key.kid).toSorted());
      // The access token's key is gone; the refresh token and the session are storage records.
      assert.equal((await call(after.url, "/auth/me", { headers: bearer(tokens.body.access_token) })).status, 401);
      const refreshed = await call(after.url, "/auth/refresh", {
        method: "POST",
        body: { refresh_token: tokens.body.refresh_token },
      });
      assert.equal(refreshed.status, 200);
      const me = await call(after.url, "/auth/me", { headers: bearer(refreshed.body.access_token) });
      assert.equal(me.status, 200);
      assert.equal(me.body.email, email);
      const bySession = await call(after.url, "/auth/me", { headers: { cookie } });
      assert.equal(bySession.status, 200);
      assert.equal(bySession.body.authenticatedBy, "session");
      const audit = await call(after.url, "/v1/audit?action=signing_key.reset", { headers: bearer(admin) });
      assert.equal(audit.status, 200);
      assert.equal(audit.body.data.length, 1);
      assert.equal(audit.body.data[0].actor, "cli");
      assert.deepEqual(audit.body.data[0].detail.discarded.toSorted(), oldKids.toSorted());
    } finally {
      assert.equal(await after.stop(), 0);
    }

    // Run again: every key unseals, nothing to do, with or without --yes.
    const again = await runCli(["keys", "reset-signing", "--yes"], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(
      again.stdout,
      /Every signing key unseals with the master key from GATEHOUSE_MASTER_KEY: nothing was changed/,
    );
    const check = await runCli(["keys", "reset-signing"], env);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /nothing to reset/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
