import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { InvalidTokenError, NotFoundError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { SessionService } from "../../sessions/session-service.ts";
import type { SessionRecord, UserRecord } from "../../storage/types.ts";
import { signInWithPassword } from "../../users/sign-in.ts";
import { requestContext } from "../authenticate.ts";
import { iso } from "../schemas.ts";
import {
  assertAllowedOriginIfPresent,
  authenticateUser,
  CSRF_HEADER,
  clearSessionCookie,
  readCookie,
  requireUser,
  SESSION_COOKIE,
  sessionCookie,
  userOf,
} from "./auth-principal.ts";

const SessionId = Type.String({ minLength: 1, maxLength: 64, pattern: "^ses_[0-9a-zA-Z]+$" });

export const SessionView = Type.Object({
  id: Type.String(),
  createdAt: Type.String(),
  lastSeenAt: Type.String(),
  expiresAt: Type.String(),
  ip: Type.Union([Type.String(), Type.Null()]),
  userAgent: Type.Union([Type.String(), Type.Null()]),
  current: Type.Boolean(),
});

export function sessionView(session: SessionRecord, currentId: string | null) {
  return {
    id: session.id,
    createdAt: iso(session.createdAt) ?? "",
    lastSeenAt: iso(session.lastSeenAt) ?? "",
    expiresAt: iso(Math.min(session.expiresAt, session.idleExpiresAt)) ?? "",
    ip: session.ip,
    userAgent: session.userAgent,
    current: session.id === currentId,
  };
}

/** Cookie sessions for browsers: sign in, read, sign out, list and end one's sessions. */
export function authSessionRoutes(gatehouse: Gatehouse): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      "/auth/session",
      {
        schema: {
          body: Type.Object(
            {
              email: Type.String({ minLength: 1, maxLength: 320 }),
              password: Type.String({ minLength: 1, maxLength: 4096 }),
            },
            { additionalProperties: false },
          ),
        },
      },
      async (request, reply) => {
        // Login CSRF: a foreign page must not sign the browser in to the attacker's account.
        assertAllowedOriginIfPresent(gatehouse, request);
        const context = (user: UserRecord) => requestContext(request, `user:${user.id}`);
        const { secret } = await signInWithPassword(
          gatehouse,
          requestContext(request, "anonymous"),
          request.body,
          "session",
          (user) =>
            gatehouse.sessions.start(user, { replacing: readCookie(request, SESSION_COOKIE), context: context(user) }),
          // No event of its own: the sign-in's failure (PASSWORD_CHANGED…) says it.
          (started, user) => gatehouse.storage.sessions.revoke(user.id, started.session.id, gatehouse.clock(), null),
        );
        return reply
          .code(204)
          .header("set-cookie", sessionCookie(secret, gatehouse.config.auth.sessionSeconds))
          .header(CSRF_HEADER, SessionService.csrfToken(secret))
          .send();
      },
    );

    app.get(
      "/auth/session",
      {
        schema: {
          response: {
            200: Type.Object({ ...SessionView.properties, userId: Type.String(), csrfToken: Type.String() }),
          },
        },
      },
      async (request) => {
        const principal = await authenticateUser(gatehouse, request);
        if (principal.via !== "session") throw new InvalidTokenError();
        return {
          ...sessionView(principal.session, principal.session.id),
          userId: principal.user.id,
          csrfToken: SessionService.csrfToken(principal.secret),
        };
      },
    );

    app.delete("/auth/session", async (request, reply) => {
      const principal = await authenticateUser(gatehouse, request);
      if (principal.via !== "session") throw new InvalidTokenError();
      await gatehouse.sessions.end(principal.user.id, principal.session.id, principal.context);
      return reply.code(204).header("set-cookie", clearSessionCookie()).send();
    });

    app.get(
      "/auth/sessions",
      { schema: { response: { 200: Type.Object({ data: Type.Array(SessionView) }) } } },
      async (request) => {
        const principal = await authenticateUser(gatehouse, request);
        const current = principal.via === "session" ? principal.session.id : null;
        const sessions = await gatehouse.sessions.list(principal.user.id);
        return { data: sessions.map((session) => sessionView(session, current)) };
      },
    );

    app.delete(
      "/auth/sessions/:id",
      { preValidation: requireUser(gatehouse), schema: { params: Type.Object({ id: SessionId }) } },
      async (request, reply) => {
        const principal = userOf(request);
        const ended = await gatehouse.sessions.end(principal.user.id, request.params.id, principal.context);
        if (!ended) throw new NotFoundError("No such active session.");
        return reply.code(204).send();
      },
    );
  };
}
