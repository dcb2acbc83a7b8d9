import { randomBytes } from "node:crypto";
import type { Clock } from "../../src/lib/clock.ts";
import type { Backend } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

/** A fixed master key for tests (the embedded default file is tested on its own). */
export const TEST_MASTER_KEY = randomBytes(32).toString("base64");

export const STRONG_PASSWORD = "plankton vinyl harbour sleet";

/** A server with auth settings suitable for tests: master key from the environment. */
export function startAuthServer(
  backend: Backend,
  options: { env?: Record<string, string>; clock?: Clock } = {},
): Promise<TestServer> {
  return startServer(backend, {
    env: { GATEHOUSE_MASTER_KEY: TEST_MASTER_KEY, ...options.env },
    ...(options.clock ? { clock: options.clock } : {}),
  });
}

let counter = 0;
export function uniqueEmail(label = "user"): string {
  counter++;
  return `${label}.${counter}.${randomBytes(3).toString("hex")}@example.com`;
}

/** Creates a user through the admin API and returns its id and credentials. */
export async function createUser(
  server: TestServer,
  options: { email?: string; password?: string; scopes?: string[] } = {},
): Promise<{ id: string; email: string; password: string }> {
  const email = options.email ?? uniqueEmail();
  const password = options.password ?? STRONG_PASSWORD;
  const created = await server.call("POST", "/v1/users", {
    email,
    password,
    ...(options.scopes ? { scopes: options.scopes } : {}),
  });
  if (created.status !== 201)
    throw new Error(`user creation failed: ${created.status} ${JSON.stringify(created.body)}`);
  return { id: created.body.id, email, password };
}

/** POST /auth/login as an app sends it, whatever the answer. */
export function attemptLogin(
  server: TestServer,
  credentials: { email: string; password: string },
  headers: Record<string, string> = {},
) {
  const body = { email: credentials.email, password: credentials.password };
  return server.call("POST", "/auth/login", body, { key: null, headers });
}

/** Signs in through POST /auth/login and returns the token response. */
export async function login(
  server: TestServer,
  credentials: { email: string; password: string },
  headers: Record<string, string> = {},
) {
  const response = await attemptLogin(server, credentials, headers);
  if (response.status !== 200) throw new Error(`login failed: ${response.status} ${JSON.stringify(response.body)}`);
  return response.body as {
    access_token: string;
    token_type: string;
    expires_in: number;
    refresh_token: string;
    scope: string;
  };
}

/** POST /auth/refresh with a refresh token in the body, as an app sends it. */
export function refresh(server: TestServer, refreshToken: string) {
  return server.call("POST", "/auth/refresh", { refresh_token: refreshToken }, { key: null });
}

/** GET /auth/me with a bearer access token. */
export function me(server: TestServer, accessToken: string) {
  return server.call("GET", "/auth/me", undefined, { key: accessToken });
}

/** Flushes the buffered audit log, then reads events for one action. */
export async function auditEvents(server: TestServer, query: string) {
  await server.gatehouse.audit.flush();
  const response = await server.call("GET", `/v1/audit?${query}`);
  if (response.status !== 200) throw new Error(`audit query failed: ${response.status}`);
  return response.body.data as Array<{
    action: string;
    outcome: string;
    actor: string;
    targetId: string | null;
    detail: Record<string, unknown> | null;
  }>;
}
