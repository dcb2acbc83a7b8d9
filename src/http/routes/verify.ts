import { isIP } from "node:net";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "typebox";
import { ValidationError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import type { VerifyResult } from "../../keys/key-verifier.ts";
import { type FailedAuthGuard, requirePermissions } from "../authenticate.ts";
import { iso, RateLimitState, ScopeName } from "../schemas.ts";

export const VerifyBody = Type.Object(
  {
    // Any string up to a sane size: a malformed key is an answer (MALFORMED), not a 400.
    key: Type.String({ maxLength: 512 }),
    scopes: Type.Optional(Type.Array(ScopeName, { maxItems: 64 })),
    /**
     * The address the key's own client called the resource server from. Keys bound to
     * addresses (allowedAddresses) are refused without it; other keys ignore it.
     */
    address: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  },
  { additionalProperties: false },
);

export const VerifyAnswer = Type.Object({
  valid: Type.Boolean(),
  code: Type.Optional(Type.String()),
  keyId: Type.Optional(Type.String()),
  ownerId: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  scopes: Type.Optional(Type.Array(Type.String())),
  expiresAt: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  ratelimit: Type.Optional(RateLimitState),
});

/**
 * POST /v1/keys/verify: the hot path of every resource server. Answers 200 for any
 * verdict; only the caller's own authentication can fail the request.
 */
function answer(result: VerifyResult) {
  if (!result.valid) return result;
  // Spelled out rather than spread: one object of one shape for the serializer.
  return {
    valid: true,
    keyId: result.keyId,
    ownerId: result.ownerId,
    scopes: result.scopes,
    expiresAt: iso(result.expiresAt),
    ratelimit: result.ratelimit,
  };
}

export function verifyRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsyncTypebox {
  return async (app) => {
    app.post(
      "/v1/keys/verify",
      {
        preValidation: requirePermissions(gatehouse, guard, ["keys:verify"]),
        schema: { body: VerifyBody, response: { 200: VerifyAnswer } },
      },
      // Not async: an active key in the in-memory index is verified synchronously, and
      // answering at once skips a promise per request on the busiest route.
      (request, reply) => {
        const context = request.principal?.context;
        if (!context) throw new Error("route reached without an authenticated principal");
        const address = request.body.address ?? null;
        if (address !== null && isIP(address) === 0) {
          const message = "must be the IPv4 or IPv6 address the key's client called from";
          throw new ValidationError(`address ${message}.`, [{ path: "/address", message }]);
        }
        const result = gatehouse.verifier.verify(request.body.key, request.body.scopes ?? [], context, address);
        if (result instanceof Promise) return result.then(answer);
        reply.send(answer(result));
        return undefined;
      },
    );
  };
}
