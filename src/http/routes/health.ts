import type { FastifyPluginAsync } from "fastify";
import { StorageUnavailableError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";

/** /healthz: the process answers (liveness). /readyz: storage answers too (readiness). */
export function healthRoutes(gatehouse: Gatehouse): FastifyPluginAsync {
  return async (app) => {
    app.get("/healthz", async () => ({ status: "ok" }));
    app.get("/readyz", async () => {
      try {
        await gatehouse.storage.ping();
      } catch (error) {
        throw new StorageUnavailableError(error);
      }
      return { status: "ready", storage: gatehouse.storage.kind };
    });
  };
}
