import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { chmodSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { tempDir } from "../support/backends.ts";
import { runCli } from "../support/processes.ts";

const STACK = /\n\s+at |node:internal|\.ts:\d+:\d+/;

// Regression: `keys rotate-signing` printed `MasterKeyError: … at loadSigningKey (…)`,
// a stack trace, where `serve` says the same in one line.
test("keys rotate-signing reports master-key problems in one line, exit 1", async () => {
  const dir = tempDir();
  try {
    const env = { GATEHOUSE_DATA_DIR: dir };
    assert.equal((await runCli(["init", "--json"], env)).code, 0);
    // The first rotation seals the signing keys under <data dir>/master.key, created now.
    const first = await runCli(["keys", "rotate-signing", "--force"], env);
    assert.equal(first.code, 0, first.stderr);

    const wrong = await runCli(["keys", "rotate-signing"], {
      ...env,
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString("base64"),
    });
    assert.equal(wrong.code, 1);
    assert.match(
      wrong.stderr,
      /^gatehouse keys rotate-signing: cannot unseal signing key \S+: the master key is not the one it was sealed with/,
    );
    assert.equal(wrong.stderr.trim().split("\n").length, 1, wrong.stderr);
    assert.doesNotMatch(wrong.stderr, STACK);

    const file = join(dir, "master.key");
    chmodSync(file, 0o644);
    const exposed = await runCli(["keys", "rotate-signing"], env);
    assert.equal(exposed.code, 1);
    assert.equal(
      exposed.stderr,
      `gatehouse keys rotate-signing: ${file} is readable by others (mode 644); run: chmod 600 ${file}\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
