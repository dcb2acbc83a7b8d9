import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from "fastify";
import { guard } from "./guard.ts";
import { checkedScopeList } from "./key-shape.ts";
import type { KeyVerifier } from "./key-verifier.ts";
import { guardToken, guardTokenNow, type TokenGuardOptions, type TokenGuardResult } from "./token-guard.ts";
import type { TokenVerifier } from "./token-verifier.ts";
import type { VerifiedToken } from "./verified-token.ts";
import type { VerifiedKey } from "./verify-result.ts";

/**
 * Fastify integration: `app.register(gatehousePlugin, { verifier })` once, then one line
 * per route: `{ preHandler: requireKey({ scopes: ["payments:read"] }) }` for API keys,
 * `{ preHandler: requireToken({ scopes: ["payments:read"] }) }` for access tokens. Fastify is
 * only a type here, so the SDK does not depend on it at run time; this file has its own
 * entry point (`@gatehouse/sdk/fastify`) so apps without Fastify never load its types.
 */
export interface GatehousePluginOptions {
  /** For `requireKey`: `createKeyVerifier(...)`. */
  verifier?: KeyVerifier;
  /** For `requireToken`: `createTokenVerifier(...)`. */
  tokenVerifier?: TokenVerifier;
  /** The realm of WWW-Authenticate challenges. Default "api". */
  realm?: string;
  /** Ms since the epoch, for RateLimit and Retry-After arithmetic. */
  clock?: () => number;
}

declare module "fastify" {
  interface FastifyRequest {
    /** The key `requireKey` verified for this request; null on routes it does not guard. */
    gatehouseKey: VerifiedKey | null;
    /** The access token `requireToken` verified for this request; null on routes it does not guard. */
    gatehouseToken: VerifiedToken | null;
  }
  interface FastifyInstance {
    gatehouseGuard: GatehousePluginOptions;
  }
}

async function register(app: FastifyInstance, options: GatehousePluginOptions): Promise<void> {
  const keys = options?.verifier;
  const tokens = options?.tokenVerifier;
  if (
    (keys !== undefined && typeof keys?.verify !== "function") ||
    (tokens !== undefined && typeof tokens?.verify !== "function") ||
    (keys === undefined && tokens === undefined)
  ) {
    throw new TypeError(
      "gatehousePlugin needs { verifier: createKeyVerifier(...) } and/or { tokenVerifier: createTokenVerifier(...) }",
    );
  }
  app.decorate("gatehouseGuard", { ...options });
  app.decorateRequest("gatehouseKey", null);
  app.decorateRequest("gatehouseToken", null);
}

/**
 * Registered without encapsulation (what fastify-plugin does, through the symbol Fastify
 * reads), so `requireKey` works on routes anywhere in the app.
 */
export const gatehousePlugin: FastifyPluginAsync<GatehousePluginOptions> = Object.assign(register, {
  [Symbol.for("skip-override")]: true,
  [Symbol.for("fastify.display-name")]: "@gatehouse/sdk",
});

/**
 * A preHandler that lets a request through only with a valid key holding every scope in
 * `scopes`; the key is then on `request.gatehouseKey`. Refusals are sent as problem+json
 * with the guard's status and headers. Scope names are checked here, when the route is
 * declared, so a typo fails at start-up rather than on the first request.
 */
export function requireKey(options: { scopes?: readonly string[] } = {}) {
  const scopes = checkedScopeList(options.scopes);
  return async function requireGatehouseKey(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const settings: GatehousePluginOptions | undefined = request.server.gatehouseGuard;
    const verifier = settings?.verifier;
    if (!settings || !verifier)
      throw new Error("requireKey() used without app.register(gatehousePlugin, { verifier })");
    const result = await guard(request, { ...settings, verifier, scopes });
    reply.headers(result.headers);
    if (result.ok) {
      request.gatehouseKey = result.key;
      return;
    }
    if (result.cause) {
      request.log.warn(
        { code: result.cause.code, status: result.cause.status },
        "gatehouse: no verdict, failing closed",
      );
    }
    await reply.code(result.status).send(result.body);
  };
}

/**
 * A preHandler that lets a request through only with a valid Gatehouse access token
 * (`Authorization: Bearer`) holding every scope in `scopes`; the token is then on
 * `request.gatehouseToken` (`sub`, `scopes`, `claims`…). Every refused token gets the
 * same 401; the reason is logged at debug level, never sent.
 */
export function requireToken(options: { scopes?: readonly string[] } = {}) {
  // Checked and frozen once, here: the verifier then skips checking it on every request.
  const scopes = checkedScopeList(options.scopes);
  // The guard's options, made once per plugin registration rather than per request.
  let prepared: { settings: GatehousePluginOptions; options: TokenGuardOptions } | null = null;
  /**
   * A callback hook, not an async one: a token the verifier can answer at once (cached,
   * or HS256) lets the request through without a promise; anything else awaits `guardToken`.
   */
  return function requireGatehouseToken(request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) {
    const settings: GatehousePluginOptions | undefined = request.server.gatehouseGuard;
    const verifier = settings?.tokenVerifier;
    if (!settings || !verifier) {
      done(new Error("requireToken() used without app.register(gatehousePlugin, { tokenVerifier })"));
      return;
    }
    if (prepared?.settings !== settings) {
      prepared = {
        settings,
        options: { verifier, scopes, ...(settings.realm === undefined ? {} : { realm: settings.realm }) },
      };
    }
    const guardOptions = prepared.options;
    const apply = (result: TokenGuardResult): void => {
      if (result.ok) {
        request.gatehouseToken = result.token;
        done();
        return;
      }
      if (result.cause) {
        request.log.warn(
          { code: result.cause.code, status: result.cause.status },
          "gatehouse: no verdict, failing closed",
        );
      } else if (result.reason) {
        request.log.debug({ reason: result.reason }, "gatehouse: access token refused");
      }
      // Answered here: a callback hook that sends a reply does not call done().
      reply.code(result.status).headers(result.headers).send(result.body);
    };
    const fail = (error: unknown) => done(error instanceof Error ? error : new Error(String(error)));
    let now: TokenGuardResult | null;
    try {
      now = guardTokenNow(request, guardOptions);
    } catch (error) {
      fail(error);
      return;
    }
    // Outside the try: `done()` runs the rest of the request, whose errors are Fastify's.
    if (now !== null) {
      apply(now);
      return;
    }
    guardToken(request, guardOptions)
      .then(apply, fail)
      // Only reached if answering itself threw; never a second done().
      .catch((error: unknown) => request.log.error({ err: error }, "gatehouse: answering the request failed"));
  };
}
