import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { FastifyReply } from "fastify";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { Type } from "typebox";
import { auditEvent } from "../../audit/context.ts";
import {
  GatehouseError,
  InvalidCredentialsError,
  InvalidGrantError,
  InvalidTokenError,
  NotFoundError,
  PasswordRejectedError,
  RateLimitedError,
  UnauthenticatedError,
  ValidationError,
} from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { addressGroup } from "../../lib/address-group.ts";
import type { UserRecord } from "../../storage/types.ts";
import type { IssuedTokens } from "../../tokens/token-service.ts";
import { signInWithPassword } from "../../users/sign-in.ts";
import { requestContext } from "../authenticate.ts";
import { matchesSchema } from "../schemas.ts";
import {
  assertAllowedOrigin,
  assertAllowedOriginIfPresent,
  authenticateUser,
  CSRF_HEADER,
  clearTokenCookies,
  noStore,
  REFRESH_COOKIE,
  readCookie,
  requireUser,
  signInCsrfToken,
  tokenCookies,
  userOf,
} from "./auth-principal.ts";

const Email = Type.String({ minLength: 1, maxLength: 320 });
/** Generous on purpose (long passphrases); the policy refuses new ones over 1024 characters. */
const Password = Type.String({ minLength: 1, maxLength: 4096 });
const Credentials = Type.Object({ email: Email, password: Password }, { additionalProperties: false });
const LoginBody = Type.Object(
  {
    email: Email,
    password: Password,
    /** "body" (default): tokens in the JSON answer. "cookie": HttpOnly cookies for browser apps. */
    delivery: Type.Optional(Type.Union([Type.Literal("body"), Type.Literal("cookie")])),
  },
  { additionalProperties: false },
);
const RefreshBody = Type.Object(
  { refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })) },
  { additionalProperties: false },
);
/**
 * Other members are ignored, as a revocation endpoint ignores parameters it does not know
 * (RFC 7009 §2.1): a client that sends more than we read must still be logged out.
 */
const LogoutBody = Type.Object(
  { refresh_token: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })) },
  { additionalProperties: true },
);

/** Cookie delivery: 204, the two cookies, and the sign-in's CSRF token for unsafe requests. */
function sendTokenCookiesFor(gatehouse: Gatehouse) {
  return (reply: FastifyReply, issued: IssuedTokens) =>
    reply
      .code(204)
      .header(
        "set-cookie",
        tokenCookies({
          access: issued.body.access_token,
          accessSeconds: issued.body.expires_in,
          refresh: issued.body.refresh_token,
          refreshSeconds: Math.max(0, Math.floor((issued.refreshExpiresAt - gatehouse.clock()) / 1000)),
        }),
      )
      .header(CSRF_HEADER, signInCsrfToken(gatehouse, issued.familyId))
      .send();
}

export const TokenResponse = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal("Bearer"),
  expires_in: Type.Integer(),
  refresh_token: Type.String(),
  scope: Type.String(),
});

const LOGOUT_CREDENTIALS =
  'Send the access token as `Authorization: Bearer <token>`, or the refresh token in the body as `{"refresh_token": "…"}` (an app whose access token has expired).';

const SignInView = Type.Object({
  id: Type.String({ description: "the sign-in's refresh token family; `sid` in its access tokens" }),
  clientId: Type.String(),
  scope: Type.String(),
  startedAt: Type.String(),
  lastRefreshedAt: Type.String(),
  expiresAt: Type.String({ description: "when its refresh token stops working unless used" }),
  current: Type.Boolean({ description: "the sign-in of the access token this request came with" }),
});
const SignInId = Type.String({ minLength: 1, maxLength: 64, pattern: "^fam_[0-9A-Za-z]+$" });

const Me = Type.Object({
  sub: Type.String(),
  email: Type.String(),
  scopes: Type.Array(Type.String()),
  authenticatedBy: Type.Union([Type.Literal("bearer"), Type.Literal("token-cookie"), Type.Literal("session")]),
  expiresAt: Type.String(),
});

/** Sign-in, token refresh and logout for first-party apps; `GET /auth/me`; password change; sign-up. */
export function authRoutes(gatehouse: Gatehouse): FastifyPluginAsyncTypebox {
  const sendTokenCookies = sendTokenCookiesFor(gatehouse);
  return async (app) => {
    app.post(
      "/auth/login",
      { schema: { body: LoginBody, response: { 200: TokenResponse } } },
      async (request, reply) => {
        const cookies = request.body.delivery === "cookie";
        // Cookie delivery turns the browser into the holder: refuse foreign pages (login CSRF).
        if (cookies) assertAllowedOriginIfPresent(gatehouse, request);
        const context = (user: UserRecord) => requestContext(request, `user:${user.id}`);
        const issued = await signInWithPassword(
          gatehouse,
          requestContext(request, "anonymous"),
          request.body,
          "token",
          (user) => gatehouse.tokens.issue(user, context(user)),
          // No event of its own: the sign-in's failure (PASSWORD_CHANGED…) says it.
          (tokens) =>
            gatehouse.storage.tokens.revokeFamily(tokens.familyId, { at: gatehouse.clock(), denyJti: null }, null),
        );
        noStore(reply);
        if (cookies) return sendTokenCookies(reply, issued);
        return issued.body;
      },
    );

    // The refresh token comes in the body, or (cookie delivery) in the refresh cookie; the
    // body is checked by hand because it may be absent.
    app.post("/auth/refresh", { schema: { response: { 200: TokenResponse } } }, async (request, reply) => {
      const body = request.body ?? {};
      if (!matchesSchema(request, RefreshBody, body)) throw new InvalidGrantError();
      noStore(reply);
      const context = requestContext(request, "anonymous");
      if (body.refresh_token !== undefined) return (await gatehouse.tokens.refresh(body.refresh_token, context)).body;
      const cookie = readCookie(request, REFRESH_COOKIE);
      if (cookie === null) throw new InvalidGrantError();
      // SameSite=Strict keeps the cookie off cross-site requests; the origin check covers
      // browsers that predate it. No CSRF token is needed: a forged refresh only rotates
      // cookies the attacker cannot read.
      assertAllowedOrigin(gatehouse, request);
      return sendTokenCookies(reply, await gatehouse.tokens.refresh(cookie, context));
    });

    // Logout here ends a token sign-in; cookie sessions end with DELETE /auth/session. The
    // credential is the access token, or the refresh token in the body: an app whose access
    // token has expired must still be able to log out without refreshing first.
    app.post("/auth/logout", async (request, reply) => {
      const body = request.body ?? {};
      if (!matchesSchema(request, LogoutBody, body)) {
        throw new ValidationError("refresh_token, when sent, must be a refresh token (a string).", [
          { path: "/refresh_token", message: "must be a string of 1 to 512 characters" },
        ]);
      }
      if (body.refresh_token === undefined) {
        const principal = await authenticateUser(gatehouse, request).catch((error: unknown) => {
          // No credential at all: say what logout takes, the refresh token included.
          if (error instanceof UnauthenticatedError) throw new UnauthenticatedError(LOGOUT_CREDENTIALS);
          throw error;
        });
        if (principal.via !== "bearer") throw new InvalidTokenError();
        await gatehouse.tokens.logout(principal.claims, principal.context);
        if (principal.transport === "cookie") reply.header("set-cookie", clearTokenCookies());
        return reply.code(204).send();
      }
      // An access token sent along is denied too when it is still valid; an expired or
      // refused one changes nothing (the refresh token decides).
      const principal = await authenticateUser(gatehouse, request).catch((error: unknown) => {
        if (error instanceof GatehouseError && error.status < 500) return null;
        throw error;
      });
      const context = principal?.context ?? requestContext(request, "anonymous");
      if (principal?.via === "bearer") await gatehouse.tokens.logout(principal.claims, context);
      // Answered alike whether or not the token was known (RFC 7009 §2.2).
      await gatehouse.tokens.logoutWithRefreshToken(body.refresh_token, context);
      if (principal?.via === "bearer" && principal.transport === "cookie") {
        reply.header("set-cookie", clearTokenCookies());
      }
      return reply.code(204).send();
    });

    // A user's token sign-ins (their apps and devices), as GET /auth/sessions lists cookie
    // sessions: listed and ended by the user, with any credential of theirs.
    app.get(
      "/auth/sign-ins",
      { schema: { response: { 200: Type.Object({ data: Type.Array(SignInView) }) } } },
      async (request) => {
        const principal = await authenticateUser(gatehouse, request);
        const current = principal.via === "bearer" ? principal.claims.sid : null;
        const signIns = await gatehouse.tokens.listSignIns(principal.user.id);
        return {
          data: signIns.map((signIn) => ({
            id: signIn.familyId,
            clientId: signIn.clientId,
            scope: signIn.scope,
            startedAt: new Date(signIn.startedAt).toISOString(),
            lastRefreshedAt: new Date(signIn.lastRefreshedAt).toISOString(),
            expiresAt: new Date(signIn.expiresAt).toISOString(),
            current: signIn.familyId === current,
          })),
        };
      },
    );

    app.delete(
      "/auth/sign-ins/:id",
      { preValidation: requireUser(gatehouse), schema: { params: Type.Object({ id: SignInId }) } },
      async (request, reply) => {
        const principal = userOf(request);
        const ended = await gatehouse.tokens.endSignIn(principal.user.id, request.params.id, principal.context);
        if (!ended) throw new NotFoundError("No such active sign-in.");
        return reply.code(204).send();
      },
    );

    app.get("/auth/me", { schema: { response: { 200: Me } } }, async (request) => {
      const principal = await authenticateUser(gatehouse, request);
      const authenticatedBy: "bearer" | "token-cookie" | "session" =
        principal.via === "session" ? "session" : principal.transport === "cookie" ? "token-cookie" : "bearer";
      const expiresAt =
        principal.via === "bearer"
          ? principal.claims.exp * 1000
          : Math.min(principal.session.expiresAt, principal.session.idleExpiresAt);
      return {
        sub: principal.user.id,
        email: principal.user.email,
        scopes: principal.user.scopes,
        authenticatedBy,
        expiresAt: new Date(expiresAt).toISOString(),
      };
    });

    app.post(
      "/auth/password",
      {
        // Signed in first: a caller who is not learns nothing of the body it would take.
        preValidation: requireUser(gatehouse),
        schema: {
          body: Type.Object({ currentPassword: Password, newPassword: Password }, { additionalProperties: false }),
        },
      },
      async (request, reply) => {
        const principal = userOf(request);
        const subject = { account: principal.user.email, ip: request.ip };
        // A stolen token must not become a way to guess the current password; the same
        // brakes as sign-in, so an attack from elsewhere does not stop the owner either.
        const refuse = (
          reason: "THROTTLED" | "WRONG_PASSWORD" | "PASSWORD_REJECTED",
          detail: Record<string, unknown> = {},
        ) =>
          gatehouse.audit.record(
            auditEvent(principal.context, gatehouse.clock(), {
              action: "user.password_change",
              outcome: "failure",
              targetType: "user",
              targetId: principal.user.id,
              detail: { reason, ...detail },
            }),
          );
        const wait = await gatehouse.loginThrottle.admit(subject);
        if (wait > 0) {
          refuse("THROTTLED", { retryAfter: wait });
          throw new RateLimitedError(wait, "sign-in");
        }
        // Counted against the account since `admit`, until the current password is found right.
        const changed = await gatehouse.users
          .changePassword(
            principal.user.id,
            { currentPassword: request.body.currentPassword, newPassword: request.body.newPassword },
            principal.via === "bearer"
              ? { sessionId: null, familyId: principal.claims.sid }
              : { sessionId: principal.session.id, familyId: null },
            principal.context,
          )
          .catch(async (error) => {
            // Not a wrong password (a refused new one, a full hasher, storage): not a guess.
            await gatehouse.loginThrottle.release(subject);
            // The current password was right and the new one broke the policy: an attempt all the same.
            if (error instanceof PasswordRejectedError) refuse("PASSWORD_REJECTED", { policy: error.reason });
            throw error;
          });
        if (!changed) {
          refuse("WRONG_PASSWORD");
          await gatehouse.loginThrottle.rejected(subject);
          throw new InvalidCredentialsError();
        }
        // The current password was right from this address: as good as a sign-in from it.
        await gatehouse.loginThrottle.success(subject);
        return reply.code(204).send();
      },
    );

    if (gatehouse.config.auth.signupEnabled) {
      // Sign-ups cost an argon2 hash each: a few per address per hour is plenty for people.
      const signups = new RateLimiterMemory({ keyPrefix: "signup", points: 10, duration: 3600 });
      app.post(
        "/auth/signup",
        {
          schema: {
            body: Credentials,
            response: { 202: Type.Object({ status: Type.Literal("accepted"), detail: Type.String() }) },
          },
        },
        async (request, reply) => {
          try {
            // Per sender: an IPv6 address by its /64, or each subscriber has 2^64 allowances.
            await signups.consume(addressGroup(request.ip));
          } catch (rejection) {
            if (rejection instanceof RateLimiterRes)
              throw new RateLimitedError(Math.ceil(rejection.msBeforeNext / 1000), "sign-up");
            throw rejection;
          }
          await gatehouse.users.signUp(request.body, requestContext(request, "anonymous"));
          return reply.code(202).send({
            status: "accepted" as const,
            detail: "If this email can be registered, the account now exists: sign in with it.",
          });
        },
      );
    }
  };
}
