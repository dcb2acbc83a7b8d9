import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { backends } from "../../../test/support/backends.ts";
import { startServer, type TestServer } from "../../../test/support/server.ts";

/** A real Gatehouse on loopback, plus a service key that may only verify. */
export interface TestGatehouse {
  server: TestServer;
  url: string;
  serviceKey: string;
  /** Creates a key through the admin API and returns its secret and id. */
  createKey(body?: {
    scopes?: string[];
    permissions?: string[];
    rateLimit?: { limit: number; windowSeconds: number };
    expiresInSeconds?: number;
    allowedAddresses?: string[];
  }): Promise<{ key: string; id: string; expiresAt: number }>;
  revoke(id: string): Promise<void>;
  close(): Promise<void>;
}

export async function startGatehouse(options: { clock?: () => number } = {}): Promise<TestGatehouse> {
  const backend = backends()[0];
  if (!backend) throw new Error("no storage backend selected");
  const server = await startServer(backend, options.clock ? { clock: options.clock } : {});
  const service = await server.call("POST", "/v1/keys", {
    name: "sdk verifier",
    scopes: [],
    permissions: ["keys:verify"],
    rateLimit: { limit: 1_000_000, windowSeconds: 60 },
  });
  if (service.status !== 201) throw new Error(`creating the service key failed: ${service.status}`);
  let n = 0;
  return {
    server,
    url: server.url,
    serviceKey: service.body.key,
    async createKey(body = {}) {
      const created = await server.call("POST", "/v1/keys", { name: `sdk test ${++n}`, scopes: [], ...body });
      if (created.status !== 201) throw new Error(`creating a key failed: ${created.status}`);
      return { key: created.body.key, id: created.body.id, expiresAt: Date.parse(created.body.expiresAt) };
    },
    async revoke(id) {
      const revoked = await server.call("POST", `/v1/keys/${id}/revoke`, { reason: "sdk test" });
      if (revoked.status !== 200) throw new Error(`revoking failed: ${revoked.status}`);
    },
    close: () => server.close(),
  };
}

/** A fetch that counts what it sends, to prove when Gatehouse was (not) asked. */
export function countingFetch(): { fetch: typeof fetch; readonly count: number } {
  let count = 0;
  return {
    fetch: (input, init) => {
      count++;
      return fetch(input, init);
    },
    get count() {
      return count;
    },
  };
}

/** A loopback URL where nothing listens: a port that was just freed. */
export async function deadUrl(): Promise<string> {
  const server = createServer();
  const url = await listen(server);
  await close(server);
  return url;
}

export function listen(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      resolve(`http://127.0.0.1:${port}`);
    });
  });
}

export function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A bad key of each kind that must get the one 401 body. */
export function malformedKeys(real: string): string[] {
  return ["nope", real.slice(0, -1), `${real}x`, "Bearer", "a".repeat(600)];
}
