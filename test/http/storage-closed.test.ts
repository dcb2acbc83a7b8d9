import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer } from "../support/server.ts";

// A server stopping under load: a request whose client went away is no longer waited for,
// and it can reach storage after storage closed. That is storage being unavailable (503,
// nothing written), not a bug: it was logged as "unhandled error" with a stack trace on
// every stop of a loaded node.
for (const backend of backends()) {
  describe(`a request that reaches storage after it closed (${backend.name})`, () => {
    test("answers 503 STORAGE_UNAVAILABLE, not 500, and logs no unhandled error", async () => {
      const lines: string[] = [];
      const server = await startServer(backend, {
        env: { GATEHOUSE_LOG_LEVEL: "warn" },
        logStream: { write: (line: string) => void lines.push(line) },
      });
      try {
        assert.equal((await server.call("POST", "/v1/keys", { name: "before", scopes: [] })).status, 201);
        await server.store.storage.close();
        for (const [method, path, body] of [
          ["POST", "/v1/keys", { name: "after", scopes: [] }],
          ["GET", "/v1/keys", undefined],
          ["GET", "/v1/audit", undefined],
        ] as const) {
          const answer = await server.call(method, path, body);
          assert.equal(answer.status, 503, `${method} ${path}: ${JSON.stringify(answer.body)}`);
          assert.equal(answer.body.code, "STORAGE_UNAVAILABLE");
        }
        assert.deepEqual(
          lines.filter((line) => line.includes("unhandled error")),
          [],
        );
      } finally {
        await server.close().catch(() => {});
      }
    });
  });
}
