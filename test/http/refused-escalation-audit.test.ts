import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

interface AuditRow {
  actor: string;
  action: string;
  outcome: string;
  targetType: string | null;
  targetId: string | null;
  ip: string | null;
  detail: { code?: string; missing?: string[]; fields?: string[] } | null;
}

// Regression: a key holding only keys:write was refused (403) when it tried to escalate,
// but nothing was written to the audit log, so the attempt left no trace.
for (const backend of backends()) {
  describe(`refused escalation attempts are audited (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend);
    });
    after(() => server.close());

    test("each refused create, PATCH, revoke and rotate leaves a failure event, without secrets", async () => {
      const writer = await server.call("POST", "/v1/keys", { name: "writer", scopes: [], permissions: ["keys:write"] });
      assert.equal(writer.status, 201);
      const asWriter = (method: string, path: string, body?: unknown) =>
        server.call(method, path, body, { key: writer.body.key });
      const adminList = await server.call("GET", "/v1/keys?limit=100");
      const admin = adminList.body.data.find((k: { name: string }) => k.name === "test admin");
      assert.ok(admin);
      const adminMissing = ["keys:read", "keys:verify", "audit:read", "users:read", "users:write", "metrics:read"];

      const attempts = [
        {
          request: ["POST", "/v1/keys", { name: "reader", scopes: [], permissions: ["keys:read"] }],
          expect: { action: "key.create", targetId: null, missing: ["keys:read"] },
        },
        {
          request: ["PATCH", `/v1/keys/${writer.body.id}`, { permissions: ["keys:write", "audit:read"] }],
          expect: { action: "key.update", targetId: writer.body.id, missing: ["audit:read"] },
        },
        {
          request: ["POST", `/v1/keys/${admin.id}/revoke`, { reason: "takeover" }],
          expect: { action: "key.revoke", targetId: admin.id, missing: adminMissing },
        },
        {
          request: ["PATCH", `/v1/keys/${admin.id}`, { name: "mine now" }],
          expect: { action: "key.update", targetId: admin.id, missing: adminMissing },
        },
        {
          request: ["POST", `/v1/keys/${admin.id}/rotate`, { gracePeriodSeconds: 0 }],
          expect: { action: "key.rotate", targetId: admin.id, missing: adminMissing },
        },
      ] as const;

      for (const { request, expect } of attempts) {
        const [method, path, body] = request;
        const refused = await asWriter(method, path, body);
        assert.equal(refused.status, 403, `${method} ${path}`);
        assert.equal(refused.body.code, "FORBIDDEN");
        const query = new URLSearchParams({
          action: expect.action,
          outcome: "failure",
          actor: `key:${writer.body.id}`,
          limit: "1",
          ...(expect.targetId ? { targetId: expect.targetId } : {}),
        });
        const audit = await server.call("GET", `/v1/audit?${query}`);
        assert.equal(audit.status, 200);
        const [event]: AuditRow[] = audit.body.data;
        assert.ok(event, `a failure event for ${method} ${path}`);
        assert.equal(event.targetType, "key");
        assert.equal(event.targetId, expect.targetId);
        assert.equal(event.ip, "127.0.0.1");
        assert.equal(event.detail?.code, "FORBIDDEN");
        assert.deepEqual(event.detail?.missing, expect.missing);
        if (expect.action === "key.update") assert.deepEqual(event.detail?.fields, Object.keys(body));
      }

      // Five refusals, five events, none carrying a secret.
      const all = await server.call("GET", `/v1/audit?outcome=failure&actor=key:${writer.body.id}&limit=100`);
      const refusals = all.body.data.filter((e: AuditRow) => e.detail?.code === "FORBIDDEN");
      assert.equal(refusals.length, 5);
      const text = JSON.stringify(all.body);
      for (const secret of [writer.body.key, server.adminKey]) {
        assert.ok(!text.includes(secret.slice(9, 40)), "no secret in the audit log");
      }
      // And nothing was changed.
      assert.equal((await server.call("GET", `/v1/keys/${admin.id}`)).body.status, "active");
    });
  });
}
