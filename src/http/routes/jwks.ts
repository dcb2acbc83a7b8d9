import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Gatehouse } from "../../gatehouse.ts";
import { JWKS_MAX_AGE_SECONDS } from "../../signing/keyring.ts";

/**
 * RFC 7517 JWK Set of the access-token signing keys: public halves only, including the
 * next key (published before it signs) and retired keys whose tokens may still be live.
 */
export function jwksRoutes(gatehouse: Gatehouse): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.get("/.well-known/jwks.json", async (_request, reply) => {
      // Cacheable, briefly: a new key is published a whole rotation before it signs, and
      // verifiers refetch when they meet an unknown kid.
      reply.header("cache-control", `public, max-age=${JWKS_MAX_AGE_SECONDS}`);
      return gatehouse.keyring.jwks();
    });
  };
}
