import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { ValidationError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { type FailedAuthGuard, requirePermissions } from "../authenticate.ts";
import { KeyId, parseInstant } from "../schemas.ts";

const INTERVALS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;
const MAX_BUCKETS = 1500;

/** GET /v1/keys/{id}/usage: verification counts per interval and outcome. */
export function usageRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get(
      "/v1/keys/:id/usage",
      {
        preValidation: requirePermissions(gatehouse, guard, ["keys:read"]),
        schema: {
          params: Type.Object({ id: KeyId }),
          querystring: Type.Object(
            {
              interval: Type.Optional(Type.Union([Type.Literal("minute"), Type.Literal("hour"), Type.Literal("day")])),
              since: Type.Optional(Type.String({ maxLength: 40 })),
              until: Type.Optional(Type.String({ maxLength: 40 })),
            },
            { additionalProperties: false },
          ),
        },
      },
      async (request) => {
        const interval = request.query.interval ?? "hour";
        const step = INTERVALS[interval];
        const now = gatehouse.clock();
        const until = parseInstant(request.query.until, "until") ?? now;
        const since = parseInstant(request.query.since, "since") ?? until - 24 * 3_600_000;
        if (since >= until) throw new ValidationError("since must be before until.");
        const start = since - (since % step);
        // Older minutes were summed per hour by housekeeping, and a minute answer reads
        // minute rows only: it would show them as missing. The horizon starts at a whole
        // minute, where an hour row can start only if it holds that minute alone.
        const horizon = now - gatehouse.config.retention.usageMinuteDays * 86_400_000;
        const minutesFrom = horizon - (horizon % 60_000);
        if (interval === "minute" && start < minutesFrom) {
          throw new ValidationError(
            `Usage is kept per minute for ${gatehouse.config.retention.usageMinuteDays} days (GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS), per hour before that: ask for interval=hour, or for minutes from ${new Date(minutesFrom).toISOString()} on (at most ${MAX_BUCKETS} minutes at once: set until too).`,
          );
        }
        if ((until - start) / step > MAX_BUCKETS) {
          const longer = interval === "day" ? "" : " or use a longer interval";
          throw new ValidationError(`That range holds more than ${MAX_BUCKETS} ${interval}s; narrow it${longer}.`);
        }
        const id = request.params.id;
        // What is written, plus what this node still holds in memory, each count once:
        // the answer is current on the node that answers, and reading it writes nothing.
        const { stored, unwritten } = await gatehouse.usage.readWithUnwritten(id, () =>
          Promise.all([
            gatehouse.keys.get(id),
            gatehouse.storage.usage.read(id, start, until, { minutesOnly: interval === "minute" }),
          ]),
        );
        const [key, rows] = stored;
        let lastUsedAt = key.lastUsedAt;
        for (const increment of unwritten) {
          if (increment.lastAt != null && (lastUsedAt === null || increment.lastAt > lastUsedAt))
            lastUsedAt = increment.lastAt;
          if (increment.bucket >= start && increment.bucket < until) rows.push(increment);
        }
        const buckets = new Map<number, Record<string, number>>();
        for (const row of rows) {
          const bucket = row.bucket - (row.bucket % step);
          const counts = buckets.get(bucket) ?? {};
          counts[row.outcome] = (counts[row.outcome] ?? 0) + row.count;
          buckets.set(bucket, counts);
        }
        return {
          keyId: key.id,
          interval,
          since: new Date(start).toISOString(),
          until: new Date(until).toISOString(),
          lastUsedAt: lastUsedAt === null ? null : new Date(lastUsedAt).toISOString(),
          buckets: [...buckets].map(([bucket, counts]) => ({
            start: new Date(bucket).toISOString(),
            total: Object.values(counts).reduce((a, b) => a + b, 0),
            counts,
          })),
        };
      },
    );
  };
}
