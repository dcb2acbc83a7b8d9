import type { FastifyPluginAsync } from "fastify";
import { StorageUnavailableError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";

/** /healthz: the process answers (liveness). /readyz: storage answers too (readiness). */
export function healthRoutes(gatehouse: Gatehouse): FastifyPluginAsync {
  return async (app) => {
    app.get("/healthz", async () => ({ status: "ok" }));
    app.get("/readyz", async (request) => {
      try {
        await gatehouse.storage.ping();
      } catch (error) {
        // The answer says only "unavailable": the reason (database unreachable, its file
        // deleted under the server) is for the operator's logs.
        request.log.warn({ err: error }, "not ready");
        throw new StorageUnavailableError(error);
      }
      return { status: "ready", storage: gatehouse.storage.kind };
    });
  };
}
