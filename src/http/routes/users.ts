import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { auditEvent } from "../../audit/context.ts";
import { PasswordRejectedError, ValidationError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import type { UserRecord } from "../../storage/types.ts";
import { type FailedAuthGuard, type Principal, requirePermissions } from "../authenticate.ts";
import { Cursor, iso, LimitParam, Scopes } from "../schemas.ts";
import { SessionView, sessionView } from "./auth-session.ts";

const UserId = Type.String({ minLength: 1, maxLength: 64, pattern: "^usr_[0-9a-zA-Z]+$" });
const IdParams = Type.Object({ id: UserId });

const UserView = Type.Object({
  id: Type.String(),
  email: Type.String(),
  status: Type.Union([Type.Literal("active"), Type.Literal("disabled")]),
  scopes: Type.Array(Type.String()),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  disabledAt: Type.Union([Type.String(), Type.Null()]),
  passwordChangedAt: Type.String(),
});

/** The admin view of a user: never the password hash. */
function userView(user: UserRecord) {
  return {
    id: user.id,
    email: user.email,
    status: user.status,
    scopes: user.scopes,
    createdAt: iso(user.createdAt) ?? "",
    updatedAt: iso(user.updatedAt) ?? "",
    disabledAt: iso(user.disabledAt),
    passwordChangedAt: iso(user.passwordChangedAt) ?? "",
  };
}

function context(principal: Principal | null) {
  if (!principal) throw new Error("route reached without an authenticated principal");
  return principal.context;
}

/** No fields to take: anything sent is a mistake worth saying (an empty object is fine). */
function assertNoBody(body: unknown): void {
  if (body !== undefined && body !== null && !(typeof body === "object" && Object.keys(body).length === 0)) {
    throw new ValidationError("This call takes no body (or {}).");
  }
}

/** Admin API for users (API keys with users:read / users:write). */
export function userRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsyncTypebox {
  return async (app) => {
    const read = requirePermissions(gatehouse, guard, ["users:read"]);
    const write = requirePermissions(gatehouse, guard, ["users:write"]);

    app.post(
      "/v1/users",
      {
        preValidation: write,
        schema: {
          body: Type.Object(
            {
              email: Type.String({ minLength: 1, maxLength: 320 }),
              password: Type.String({ minLength: 1, maxLength: 4096 }),
              scopes: Type.Optional(Scopes),
            },
            { additionalProperties: false },
          ),
          response: { 201: UserView },
        },
      },
      async (request, reply) => {
        const user = await gatehouse.users.create(request.body, context(request.principal));
        reply.code(201).header("location", `/v1/users/${user.id}`);
        return userView(user);
      },
    );

    app.get(
      "/v1/users",
      {
        preValidation: read,
        schema: {
          querystring: Type.Object(
            { limit: Type.Optional(LimitParam), cursor: Type.Optional(Cursor) },
            { additionalProperties: false },
          ),
          response: {
            200: Type.Object({ data: Type.Array(UserView), nextCursor: Type.Union([Type.String(), Type.Null()]) }),
          },
        },
      },
      async (request) => {
        const limit = Number(request.query.limit ?? 50);
        const records = await gatehouse.users.list({
          limit: limit + 1,
          ...(request.query.cursor ? { before: request.query.cursor } : {}),
        });
        const page = records.slice(0, limit);
        return {
          data: page.map(userView),
          nextCursor: records.length > limit ? (page.at(-1)?.id ?? null) : null,
        };
      },
    );

    app.get(
      "/v1/users/:id",
      { preValidation: read, schema: { params: IdParams, response: { 200: UserView } } },
      async (request) => userView(await gatehouse.users.get(request.params.id)),
    );

    app.post(
      "/v1/users/:id/disable",
      { preValidation: write, schema: { params: IdParams, response: { 200: UserView } } },
      async (request) => {
        assertNoBody(request.body);
        return userView(await gatehouse.users.disable(request.params.id, context(request.principal)));
      },
    );

    app.post(
      "/v1/users/:id/enable",
      { preValidation: write, schema: { params: IdParams, response: { 200: UserView } } },
      async (request) => {
        assertNoBody(request.body);
        return userView(await gatehouse.users.enable(request.params.id, context(request.principal)));
      },
    );

    app.post(
      "/v1/users/:id/password",
      {
        preValidation: write,
        schema: {
          params: IdParams,
          body: Type.Object(
            { password: Type.String({ minLength: 1, maxLength: 4096 }) },
            { additionalProperties: false },
          ),
        },
      },
      async (request, reply) => {
        const actor = context(request.principal);
        await gatehouse.users.setPassword(request.params.id, request.body.password, actor).catch((error: unknown) => {
          // A refused set is an admin action too: the log shows who tried, on whom, and why not.
          if (error instanceof PasswordRejectedError) {
            gatehouse.audit.record(
              auditEvent(actor, gatehouse.clock(), {
                action: "user.password_set",
                outcome: "failure",
                targetType: "user",
                targetId: request.params.id,
                detail: { reason: "PASSWORD_REJECTED", policy: error.reason },
              }),
            );
          }
          throw error;
        });
        return reply.code(204).send();
      },
    );

    app.patch(
      "/v1/users/:id",
      {
        preValidation: write,
        schema: {
          params: IdParams,
          // Scope names as POST /v1/users takes them; more fields will join, so at least one.
          body: Type.Object({ scopes: Type.Optional(Scopes) }, { additionalProperties: false, minProperties: 1 }),
          response: { 200: UserView },
        },
      },
      async (request) =>
        userView(await gatehouse.users.update(request.params.id, request.body, context(request.principal))),
    );

    app.delete("/v1/users/:id", { preValidation: write, schema: { params: IdParams } }, async (request, reply) => {
      await gatehouse.users.delete(request.params.id, context(request.principal));
      return reply.code(204).send();
    });

    app.get(
      "/v1/users/:id/sessions",
      {
        preValidation: read,
        schema: { params: IdParams, response: { 200: Type.Object({ data: Type.Array(SessionView) }) } },
      },
      async (request) => {
        await gatehouse.users.get(request.params.id);
        const sessions = await gatehouse.sessions.list(request.params.id);
        return { data: sessions.map((session) => sessionView(session, null)) };
      },
    );

    app.delete(
      "/v1/users/:id/sessions",
      {
        preValidation: write,
        schema: { params: IdParams, response: { 200: Type.Object({ endedSessions: Type.Integer() }) } },
      },
      async (request) => {
        await gatehouse.users.get(request.params.id);
        const ended = await gatehouse.sessions.endAll(request.params.id, context(request.principal));
        return { endedSessions: ended };
      },
    );
  };
}
