import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import type { Gatehouse } from "../../gatehouse.ts";
import { type FailedAuthGuard, requirePermissions } from "../authenticate.ts";
import { LimitParam, parseInstant } from "../schemas.ts";

const Filter = Type.String({ minLength: 1, maxLength: 200 });

/** GET /v1/audit: newest first, filterable, cursor-paginated. */
export function auditRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/v1/audit",
      {
        preValidation: requirePermissions(gatehouse, guard, ["audit:read"]),
        schema: {
          querystring: Type.Object(
            {
              action: Type.Optional(Filter),
              actor: Type.Optional(Filter),
              targetId: Type.Optional(Filter),
              outcome: Type.Optional(Type.Union([Type.Literal("success"), Type.Literal("failure")])),
              since: Type.Optional(Type.String({ maxLength: 40 })),
              until: Type.Optional(Type.String({ maxLength: 40 })),
              limit: Type.Optional(LimitParam),
              cursor: Type.Optional(Type.String({ pattern: "^[1-9]\\d{0,15}$" })),
            },
            { additionalProperties: false },
          ),
        },
      },
      async (request) => {
        await gatehouse.audit.flush();
        const q = request.query;
        const since = parseInstant(q.since, "since");
        const until = parseInstant(q.until, "until");
        const limit = Number(q.limit ?? 50);
        const events = await gatehouse.storage.audit.query({
          limit: limit + 1,
          ...(q.action ? { action: q.action } : {}),
          ...(q.actor ? { actor: q.actor } : {}),
          ...(q.targetId ? { targetId: q.targetId } : {}),
          ...(q.outcome ? { outcome: q.outcome } : {}),
          ...(since !== undefined ? { since } : {}),
          ...(until !== undefined ? { until } : {}),
          ...(q.cursor ? { before: Number(q.cursor) } : {}),
        });
        const page = events.slice(0, limit);
        return {
          data: page.map((event) => ({ ...event, at: new Date(event.at).toISOString() })),
          nextCursor: events.length > limit ? String(page.at(-1)?.id) : null,
        };
      },
    );
  };
}
