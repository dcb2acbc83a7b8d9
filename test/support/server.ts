import type { FastifyInstance } from "fastify";
import type { DestinationStream } from "pino";
import { CLI_ACTOR } from "../../src/audit/context.ts";
import { type GatehouseConfig, loadConfig } from "../../src/config/config.ts";
import { createGatehouse, type Gatehouse } from "../../src/gatehouse.ts";
import { buildApp, createLogger } from "../../src/http/app.ts";
import { PERMISSIONS } from "../../src/keys/permissions.ts";
import type { Clock } from "../../src/lib/clock.ts";
import type { Backend, TestStore } from "./backends.ts";

export interface TestServer {
  url: string;
  app: FastifyInstance;
  gatehouse: Gatehouse;
  store: TestStore;
  /** A key holding every admin permission. */
  adminKey: string;
  /** Sends JSON with the admin key unless `key` says otherwise (null: no credential). */
  call(
    method: string,
    path: string,
    body?: unknown,
    options?: { key?: string | null; headers?: Record<string, string> },
    // biome-ignore lint/suspicious/noExplicitAny: tests read response bodies field by field and assert each.
  ): Promise<{ status: number; headers: Headers; body: any }>;
  close(): Promise<void>;
}

/**
 * A real Gatehouse on loopback (real HTTP, real storage) for one test file. Buffers are
 * flushed often so tests can read usage and audit without waiting long.
 */
export async function startServer(
  backend: Backend,
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    /** Captures the server's log lines (set GATEHOUSE_LOG_LEVEL in `env` to see them). */
    logStream?: DestinationStream;
  } = {},
): Promise<TestServer> {
  const store = await backend.create();
  const config: GatehouseConfig = loadConfig({
    GATEHOUSE_PORT: "0",
    GATEHOUSE_LOG_LEVEL: "silent",
    GATEHOUSE_USAGE_FLUSH_MS: "50",
    ...options.env,
  });
  const log = createLogger(config, options.logStream);
  const gatehouse = createGatehouse({
    config,
    storage: store.storage,
    log,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  await gatehouse.start();
  const app = buildApp(gatehouse, { logger: log });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  const { key: adminKey } = await gatehouse.keys.create(
    {
      name: "test admin",
      scopes: [],
      permissions: [...PERMISSIONS],
      rateLimit: { limit: 1_000_000, windowSeconds: 60 },
    },
    { context: CLI_ACTOR, permissions: null },
  );
  return {
    url: address,
    app,
    gatehouse,
    store,
    adminKey,
    async call(method, path, body, callOptions = {}) {
      const key = callOptions.key === undefined ? adminKey : callOptions.key;
      const headers: Record<string, string> = { ...callOptions.headers };
      if (key !== null) headers.authorization = `Bearer ${key}`;
      if (body !== undefined) headers["content-type"] ??= "application/json";
      const response = await fetch(`${address}${path}`, {
        method,
        headers,
        ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : null;
      } catch {}
      return { status: response.status, headers: response.headers, body: parsed };
    },
    async close() {
      await app.close();
      await gatehouse.stop().catch(() => {});
      await store.dispose();
    },
  };
}
