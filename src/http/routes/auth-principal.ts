import { createHmac } from "node:crypto";
import type { FastifyReply, FastifyRequest } from "fastify";
import { type ActorContext, auditEvent } from "../../audit/context.ts";
import { CsrfError, InvalidTokenError, UnauthenticatedError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { sameSecret } from "../../lib/constant-time.ts";
import { SessionService } from "../../sessions/session-service.ts";
import type { SessionRecord, UserRecord } from "../../storage/types.ts";
import type { AccessTokenClaims } from "../../tokens/access-token.ts";
import { bearerToken, requestContext } from "../authenticate.ts";

/**
 * The session cookie. `__Host-` makes the browser insist on Secure, Path=/ and no Domain,
 * so a sibling subdomain cannot plant or overwrite it (RFC 6265bis §4.1.3.2).
 */
export const SESSION_COOKIE = "__Host-gatehouse_session";
export const CSRF_HEADER = "x-csrf-token";
/** Access token for browser apps that take their tokens as cookies (`delivery: "cookie"`). */
export const ACCESS_COOKIE = "__Host-gatehouse_access";
/**
 * Refresh token cookie, sent only to the refresh endpoint. `__Host-` requires Path=/, so
 * this one is `__Secure-` (still Secure-only and not settable over plain HTTP).
 */
export const REFRESH_COOKIE = "__Secure-gatehouse_refresh";
export const REFRESH_PATH = "/auth/refresh";

/** A signed-in user, by access token or by session cookie. */
export type UserPrincipal =
  | {
      via: "bearer";
      /** Where the access token came from: the Authorization header, or the access cookie. */
      transport: "header" | "cookie";
      user: UserRecord;
      claims: AccessTokenClaims;
      context: ActorContext;
    }
  | { via: "session"; user: UserRecord; session: SessionRecord; secret: string; context: ActorContext };

/** Cookie value by name from the Cookie header (RFC 6265 §5.4), or null. */
export function readCookie(request: FastifyRequest, name: string): string | null {
  const header = request.headers.cookie;
  if (typeof header !== "string") return null;
  for (const part of header.split(";")) {
    const at = part.indexOf("=");
    if (at < 0) continue;
    if (part.slice(0, at).trim() === name) return part.slice(at + 1).trim();
  }
  return null;
}

export function sessionCookie(value: string, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${maxAgeSeconds}`;
}

export function clearSessionCookie(): string {
  return `${SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`;
}

/** Set-Cookie values for tokens delivered as cookies; the refresh cookie goes only to the refresh path. */
export function tokenCookies(tokens: {
  access: string;
  accessSeconds: number;
  refresh: string;
  refreshSeconds: number;
}) {
  return [
    `${ACCESS_COOKIE}=${tokens.access}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=${tokens.accessSeconds}`,
    `${REFRESH_COOKIE}=${tokens.refresh}; Path=${REFRESH_PATH}; Secure; HttpOnly; SameSite=Strict; Max-Age=${tokens.refreshSeconds}`,
  ];
}

export function clearTokenCookies(): string[] {
  return [
    `${ACCESS_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0`,
    `${REFRESH_COOKIE}=; Path=${REFRESH_PATH}; Secure; HttpOnly; SameSite=Strict; Max-Age=0`,
  ];
}

/**
 * The CSRF token of a sign-in whose tokens travel as cookies: an HMAC of its `sid` under a
 * key derived from the master key. It stays the same across refreshes of the sign-in.
 */
export function signInCsrfToken(gatehouse: Gatehouse, sid: string): string {
  return createHmac("sha256", gatehouse.keyring.derivedKey("csrf for token cookies")).update(sid).digest("base64url");
}

/** Origin of a cross-site check: the Origin header, else the Referer's origin, else null. */
function requestOrigin(request: FastifyRequest): string | null {
  const origin = request.headers.origin;
  if (typeof origin === "string" && origin !== "null") return origin;
  const referer = request.headers.referer;
  if (typeof referer === "string") {
    try {
      return new URL(referer).origin;
    } catch {}
  }
  return null;
}

/**
 * An origin as the answer and the audit log keep it: the caller's own header, cut short
 * (it comes before any sign-in brake, and a header may be 16 KiB).
 */
function cut(origin: string): string {
  return origin.length > 100 ? `${origin.slice(0, 100)}…` : origin;
}

function quoted(origin: string): string {
  return JSON.stringify(cut(origin));
}

function foreignOrigin(origin: string): string {
  return `Requests from the origin ${quoted(origin)} are not allowed here (GATEHOUSE_ALLOWED_ORIGINS lists the allowed ones).`;
}

/** Which part of the cross-site check failed, as the audit event records it. */
type CsrfFailure = "origin_missing" | "origin_not_allowed" | "token_missing" | "token_mismatch";

function recordCsrfFailure(
  gatehouse: Gatehouse,
  request: FastifyRequest,
  origin: string | null,
  reason: CsrfFailure,
): void {
  gatehouse.audit.record(
    auditEvent(requestContext(request, "anonymous"), gatehouse.clock(), {
      action: "auth.csrf",
      outcome: "failure",
      detail: { reason, origin: origin === null ? null : cut(origin), route: request.routeOptions.url ?? null },
    }),
  );
}

/** Refuses a request whose Origin (or Referer) is present and not one of ours. */
export function assertAllowedOriginIfPresent(gatehouse: Gatehouse, request: FastifyRequest): void {
  const origin = requestOrigin(request);
  if (origin !== null && !gatehouse.config.auth.allowedOrigins.includes(origin)) {
    recordCsrfFailure(gatehouse, request, origin, "origin_not_allowed");
    throw new CsrfError(foreignOrigin(origin));
  }
}

/**
 * CSRF defence for cookie-authenticated state changes (OWASP CSRF Prevention Cheat
 * Sheet): the request must come from an allowed origin (Origin, or Referer when a
 * browser omits Origin) and carry the session's CSRF token in X-CSRF-Token, which a
 * cross-site page cannot read. Bearer-authenticated requests need neither: browsers
 * never attach a bearer token by themselves.
 */
function assertCsrf(
  gatehouse: Gatehouse,
  request: FastifyRequest,
  tokenIsValid: (presented: unknown) => boolean,
): void {
  const origin = requestOrigin(request);
  const presented = request.headers[CSRF_HEADER];
  const [reason, failure]: [CsrfFailure, string] | [null, null] =
    origin === null
      ? [
          "origin_missing",
          "Requests authenticated by a cookie need an Origin (or Referer) header from an allowed origin; none was sent.",
        ]
      : !gatehouse.config.auth.allowedOrigins.includes(origin)
        ? ["origin_not_allowed", foreignOrigin(origin)]
        : tokenIsValid(presented)
          ? [null, null]
          : presented === undefined
            ? [
                "token_missing",
                "Changes authenticated by a cookie need the X-CSRF-Token header with the token given at sign-in.",
              ]
            : [
                "token_mismatch",
                "The X-CSRF-Token header does not match this session's token (the one given at sign-in).",
              ];
  if (reason !== null) {
    recordCsrfFailure(gatehouse, request, origin, reason);
    throw new CsrfError(failure);
  }
}

/** For endpoints a cookie alone authorises without a CSRF token (refresh): the origin must be ours. */
export function assertAllowedOrigin(gatehouse: Gatehouse, request: FastifyRequest): void {
  assertCsrf(gatehouse, request, () => true);
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);

const NO_CREDENTIAL = "Sign in first: send an access token as `Authorization: Bearer <token>`, or the session cookie.";

const authenticatedUsers = new WeakMap<FastifyRequest, UserPrincipal>();

/**
 * `authenticateUser` as a route's preValidation hook, so it runs before the route's
 * schemas: a caller who is not signed in gets 401 and learns nothing about what the route
 * accepts, as on the API-key routes (docs/errors.md). The handler takes the principal
 * with `userOf`.
 */
export function requireUser(gatehouse: Gatehouse) {
  return async (request: FastifyRequest): Promise<void> => {
    authenticatedUsers.set(request, await authenticateUser(gatehouse, request));
  };
}

/** The principal `requireUser` authenticated for this request. */
export function userOf(request: FastifyRequest): UserPrincipal {
  const principal = authenticatedUsers.get(request);
  if (!principal) throw new Error("route reached without an authenticated user");
  return principal;
}

/**
 * Authenticates a user by `Authorization: Bearer <access token>`, else the access-token
 * cookie, else the session cookie. Unsafe methods authenticated by a cookie also pass
 * the CSRF check. Any credential that fails is one InvalidTokenError (401,
 * `WWW-Authenticate: Bearer error="invalid_token"`); none at all is UNAUTHENTICATED (401,
 * the challenge alone).
 */
export async function authenticateUser(gatehouse: Gatehouse, request: FastifyRequest): Promise<UserPrincipal> {
  const anonymous = requestContext(request, "anonymous");
  if (request.headers.authorization !== undefined) {
    const token = bearerToken(request);
    if (token === null) throw new InvalidTokenError();
    const { claims, user } = await gatehouse.tokens.authenticate(token, anonymous);
    return { via: "bearer", transport: "header", user, claims, context: requestContext(request, `user:${user.id}`) };
  }
  const accessCookie = readCookie(request, ACCESS_COOKIE);
  if (accessCookie !== null) {
    const { claims, user } = await gatehouse.tokens.authenticate(accessCookie, anonymous);
    if (!SAFE_METHODS.has(request.method)) {
      const expected = signInCsrfToken(gatehouse, claims.sid);
      assertCsrf(gatehouse, request, (presented) => sameSecret(expected, presented));
    }
    return { via: "bearer", transport: "cookie", user, claims, context: requestContext(request, `user:${user.id}`) };
  }
  const secret = readCookie(request, SESSION_COOKIE);
  // No credential at all is not an invalid one: RFC 6750 §3.1 asks for the challenge
  // without an error code then (the SDK answers the same way).
  if (secret === null) throw new UnauthenticatedError(NO_CREDENTIAL);
  const active = await gatehouse.sessions.resolve(secret);
  if (!active) {
    gatehouse.audit.record(auditEvent(anonymous, gatehouse.clock(), { action: "auth.session", outcome: "failure" }));
    throw new InvalidTokenError();
  }
  if (!SAFE_METHODS.has(request.method)) {
    assertCsrf(gatehouse, request, (presented) =>
      SessionService.checkCsrfToken(active.secret, typeof presented === "string" ? presented : undefined),
    );
  }
  return {
    via: "session",
    user: active.user,
    session: active.session,
    secret: active.secret,
    context: requestContext(request, `user:${active.user.id}`),
  };
}

export function noStore(reply: FastifyReply): void {
  // RFC 6749 §5.1: token responses must not be cached.
  reply.header("cache-control", "no-store").header("pragma", "no-cache");
}
