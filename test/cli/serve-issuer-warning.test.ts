import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { CLUSTER_MASTER_KEY, createTestDatabase, startNode } from "../support/processes.ts";

const enabled = backends().some((b) => b.name === "postgres");

/** The pino lines of a node's output at level warn (40). */
function warnings(logs: string): string[] {
  return logs
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { level: number; msg: string })
    .filter((line) => line.level === 40)
    .map((line) => line.msg);
}

/**
 * Nodes on a shared store derive their issuer from their own host and port when
 * GATEHOUSE_ISSUER is unset, so a token from one is refused by another: serve says so.
 */
describe("serve on PostgreSQL warns when GATEHOUSE_ISSUER is not set", { skip: !enabled }, () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  before(async () => {
    database = await createTestDatabase();
  });
  after(() => database.drop());

  const env = () => ({ GATEHOUSE_DATABASE_URL: database.url, GATEHOUSE_MASTER_KEY: CLUSTER_MASTER_KEY });

  test("no GATEHOUSE_ISSUER: one warning naming the derived issuer and the setting", async () => {
    const node = await startNode({ ...env(), GATEHOUSE_ISSUER: "" });
    try {
      // The warning comes after the listening line; wait for the node's first-start note too.
      await waitFor(() => warnings(node.logs()).some((msg) => msg.includes("No admin key")));
      const issuerWarnings = warnings(node.logs()).filter((msg) => msg.includes("GATEHOUSE_ISSUER"));
      assert.equal(issuerWarnings.length, 1, node.logs());
      assert.match(
        issuerWarnings[0] ?? "",
        /GATEHOUSE_ISSUER is not set, so this node's issuer is http:\/\/127\.0\.0\.1:\d+.*access tokens from one node fail on every node with another issuer: set GATEHOUSE_ISSUER to the same public URL on every node/,
      );
    } finally {
      assert.equal(await node.stop(), 0);
    }
  });

  test("GATEHOUSE_ISSUER set: no such warning", async () => {
    const node = await startNode({ ...env(), GATEHOUSE_ISSUER: "http://127.0.0.1:8443" });
    try {
      await waitFor(() => warnings(node.logs()).some((msg) => msg.includes("No admin key")));
      assert.deepEqual(
        warnings(node.logs()).filter((msg) => msg.includes("GATEHOUSE_ISSUER")),
        [],
      );
    } finally {
      assert.equal(await node.stop(), 0);
    }
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
