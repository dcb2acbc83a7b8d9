import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import { test } from "node:test";
import { tempDir } from "../support/backends.ts";
import { runCli, startNode } from "../support/processes.ts";

test("serve refuses to start with a master key other than the one that sealed the signing keys", async () => {
  const dir = tempDir();
  try {
    const first = randomBytes(32).toString("base64");
    assert.equal((await runCli(["init", "--json"], { GATEHOUSE_DATA_DIR: dir })).code, 0);
    const node = await startNode({ GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: first });
    assert.equal((await fetch(`${node.url}/.well-known/jwks.json`)).status, 200);
    assert.equal(await node.stop(), 0);
    const wrong = randomBytes(32).toString("base64");
    await assert.rejects(
      startNode({ GATEHOUSE_DATA_DIR: dir, GATEHOUSE_MASTER_KEY: wrong }),
      /exited \(1\) before listening:[\s\S]*signing keys cannot be loaded[\s\S]*master key is not the one/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
