import { createPublicKey, randomUUID } from "node:crypto";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { createUser, login, startAuthServer } from "../../../test/auth/support.ts";
import { backends } from "../../../test/support/backends.ts";
import type { TestServer } from "../../../test/support/server.ts";
import { createTokenVerifier, type TokenVerifier, type TokenVerifierOptions } from "../../src/index.ts";

/** A real Gatehouse on loopback with users, sign-in and a signing keyring. */
export interface TokenGatehouse {
  server: TestServer;
  issuer: string;
  audience: string;
  jwksUri: string;
  /** Creates a user through the admin API and signs in through POST /auth/login. */
  signIn(options?: { scopes?: string[] }): Promise<{ userId: string; accessToken: string; refreshToken: string }>;
  /** POST /auth/logout with the access token. */
  logout(accessToken: string): Promise<number>;
  /** What `gatehouse keys rotate-signing` does: next key signs, a new next key is published. */
  rotate(): Promise<{ current: string; next: string; retired: string }>;
  /** Re-signs `token` with the server's own current key, with header and claim changes (undefined deletes). */
  resign(
    token: string,
    changes: { header?: Record<string, unknown>; claims?: Record<string, unknown> },
  ): Promise<string>;
  /** The public half of the key that signed `token`, from the JWKS. */
  publicKeyOf(token: string): Promise<{ jwk: Record<string, unknown>; key: ReturnType<typeof createPublicKey> }>;
  verifier(options?: Partial<TokenVerifierOptions>): TokenVerifier;
  close(): Promise<void>;
}

export async function startTokenGatehouse(
  options: { clock?: () => number; env?: Record<string, string> } = {},
): Promise<TokenGatehouse> {
  const backend = backends()[0];
  if (!backend) throw new Error("no storage backend selected");
  const server = await startAuthServer(backend, {
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.env ? { env: options.env } : {}),
  });
  const { issuer, audience } = server.gatehouse.tokens.settings;
  const jwksUri = `${server.url}/.well-known/jwks.json`;
  return {
    server,
    issuer,
    audience,
    jwksUri,
    async signIn(signInOptions = {}) {
      const user = await createUser(server, signInOptions.scopes ? { scopes: signInOptions.scopes } : {});
      const tokens = await login(server, user);
      return { userId: user.id, accessToken: tokens.access_token, refreshToken: tokens.refresh_token };
    },
    async logout(accessToken) {
      return (await server.call("POST", "/auth/logout", undefined, { key: accessToken })).status;
    },
    async rotate() {
      const rotated = await server.gatehouse.keyring.rotate({
        actor: "cli",
        ip: null,
        userAgent: null,
        requestId: null,
      });
      if (!rotated) throw new Error("rotation lost a race");
      return rotated;
    },
    async resign(token, changes) {
      const key = await server.gatehouse.keyring.signingKey();
      const header: Record<string, unknown> = { alg: key.alg, typ: "at+jwt", kid: key.kid, ...changes.header };
      const claims: Record<string, unknown> = { ...decodeJwt(token), jti: randomUUID(), ...changes.claims };
      for (const bag of [header, claims]) {
        for (const [name, value] of Object.entries(bag)) if (value === undefined) delete bag[name];
      }
      return new SignJWT(claims).setProtectedHeader({ ...header, alg: String(header.alg) }).sign(key.privateKey);
    },
    async publicKeyOf(token) {
      const kid = decodeProtectedHeader(token).kid;
      const jwks = (await server.call("GET", "/.well-known/jwks.json", undefined, { key: null })).body;
      const jwk = jwks.keys.find((candidate: { kid: string }) => candidate.kid === kid);
      if (!jwk) throw new Error(`kid ${String(kid)} is not in the JWKS`);
      return { jwk, key: createPublicKey({ key: jwk, format: "jwk" }) };
    },
    verifier(verifierOptions = {}) {
      return createTokenVerifier({ issuer, audience, jwksUri, ...verifierOptions });
    },
    close: () => server.close(),
  };
}

/** A fetch that counts requests per path, to prove when the JWKS or /auth/me was (not) asked. */
export function pathCountingFetch(): { fetch: typeof fetch; count(path: string): number } {
  const counts = new Map<string, number>();
  return {
    fetch: (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      counts.set(url.pathname, (counts.get(url.pathname) ?? 0) + 1);
      return fetch(input, init);
    },
    count: (path) => counts.get(path) ?? 0,
  };
}

export const b64 = (value: unknown) =>
  Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

export function segments(token: string): [string, string, string] {
  const [h, p, s] = token.split(".");
  if (h === undefined || p === undefined || s === undefined) throw new Error("not a compact JWS");
  return [h, p, s];
}
