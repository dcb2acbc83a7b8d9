import type { FastifyPluginAsync } from "fastify";
import type { Gatehouse } from "../../gatehouse.ts";
import { type FailedAuthGuard, requirePermissions } from "../authenticate.ts";

/**
 * GET /metrics in Prometheus text format. It needs a key with `metrics:read` (Prometheus
 * sends it with `authorization: {credentials_file: …}`): counts and latencies say a lot
 * about a deployment, so they are not public.
 */
export function metricsRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsync {
  return async (app) => {
    app.get(
      "/metrics",
      { preValidation: requirePermissions(gatehouse, guard, ["metrics:read"]) },
      async (_request, reply) => {
        reply.type(gatehouse.metrics.registry.contentType);
        return gatehouse.metrics.registry.metrics();
      },
    );
  };
}
