import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, test } from "node:test";
import { keyHint } from "../../src/keys/key-format.ts";
import { PERMISSIONS } from "../../src/keys/permissions.ts";
import { tempDir } from "../support/backends.ts";
import { runCli } from "../support/processes.ts";

// Issue 2: "`npx gatehouse init --json` on an empty store creates it and prints
// {"adminKey":"…"} once: an API key carrying every admin permission. On an existing store
// it refuses, unless explicitly asked for a new admin key." The other init tests read the
// plain and --key-only refusals; this one pins the --json one and the permissions.
const dir = tempDir("gatehouse-init-json-");
after(() => rmSync(dir, { recursive: true, force: true }));

test("init --json: one admin key with every permission; a second init --json refuses and prints no key", async () => {
  const env = { GATEHOUSE_DATA_DIR: dir };
  const first = await runCli(["init", "--json"], env);
  assert.equal(first.code, 0, first.stderr);
  const printed = JSON.parse(first.stdout);
  assert.deepEqual(Object.keys(printed), ["adminKey"]);
  const adminKey: string = printed.adminKey;

  // The key is not stored, so the listing knows it by its hint: exactly one key, holding
  // every permission Gatehouse has.
  const listed = await runCli(["keys", "list", "--json"], env);
  assert.equal(listed.code, 0, listed.stderr);
  const keys = listed.stdout
    .trim()
    .split("\n")
    .map((line) => JSON.parse(line));
  assert.equal(keys.length, 1);
  assert.equal(keys[0].hint, keyHint(adminKey));
  assert.deepEqual([...keys[0].permissions].sort(), [...PERMISSIONS].sort());
  assert.ok(!listed.stdout.includes(adminKey), "the listing never shows the key itself");

  const again = await runCli(["init", "--json"], env);
  assert.equal(again.code, 1);
  assert.equal(again.stdout, "", "nothing a script could mistake for a key");
  assert.match(again.stderr, /--new-admin-key/);
  assert.doesNotMatch(again.stderr, /gate_[0-9A-Za-z]{49}/);
  // The refusal issued nothing.
  const after = await runCli(["keys", "list", "--json"], env);
  assert.equal(after.stdout.trim().split("\n").length, 1);
});
