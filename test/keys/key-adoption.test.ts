import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { digestKey, generateKey, keyHint } from "../../src/keys/key-format.ts";
import { backends } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";
import { startServer, type TestServer } from "../support/server.ts";

// The key index exists on the embedded (SQLite) store only.
const sqlite = backends().find((backend) => backend.name === "sqlite");

describe("a key written by another process, verified before the index polls", { skip: !sqlite }, () => {
  let server: TestServer;
  before(async () => {
    server = await startServer(sqlite as NonNullable<typeof sqlite>);
  });
  after(() => server.close());

  /** A key inserted straight into storage, as the CLI does: the server's index has not seen it. */
  async function writtenElsewhere(fields: Parameters<typeof keyRecord>[1] = {}) {
    const secret = generateKey("gate");
    const record = keyRecord(Date.now(), { digest: digestKey(secret), hint: keyHint(secret), ...fields });
    await server.gatehouse.storage.keys.insert(record, null);
    return { secret, record };
  }

  test("its rate limit holds across the moment the index takes it in", async () => {
    const active = server.gatehouse.activeKeys;
    assert.ok(active);
    const { secret } = await writtenElsewhere({ rateLimit: { limit: 3, windowSeconds: 3600 } });
    const verify = async () => (await server.gatehouse.verifier.verify(secret, [], CLI_ACTOR)).valid;
    // Before the poll (every 100 ms) brings it: found in storage.
    const first = [await verify(), await verify()];
    // The poll applies the change log: the same key, from storage again.
    await active.catchUp();
    const after = [await verify(), await verify(), await verify()];
    assert.deepEqual([...first, ...after], [true, true, true, false, false], "three in the window, not five");
  });

  test("a key revoked after it was read is not put back into the index by that read", async () => {
    const active = server.gatehouse.activeKeys;
    assert.ok(active);
    const { secret, record } = await writtenElsewhere();
    // The race, step by step: a mark taken, the key read (active), then a revocation
    // committed and applied from the change log, then the stale read offered to the index.
    const mark = active.mark();
    const stale = await server.gatehouse.storage.keys.findByDigest(digestKey(secret));
    assert.ok(stale && stale.revokedAt === null);
    await server.gatehouse.keys.revoke(record.id, "test", { context: CLI_ACTOR, permissions: null });
    assert.equal(active.adopt(stale, mark), -1, "a change-log read began since the mark: refused");
    assert.equal((await server.gatehouse.verifier.verify(secret, [], CLI_ACTOR)).valid, false);
    // Without a change-log read in between, the same offer is taken.
    const { secret: fresh } = await writtenElsewhere();
    const quiet = active.mark();
    const read = await server.gatehouse.storage.keys.findByDigest(digestKey(fresh));
    assert.ok(read);
    assert.ok(active.adopt(read, quiet) >= 0);
  });
});
