import type { FastifyPluginAsync } from "fastify";
import { Type } from "typebox";
import { auditEvent } from "../../audit/context.ts";
import { GatehouseError, RateLimitedError, ValidationError } from "../../errors/gatehouse-error.ts";
import type { Gatehouse } from "../../gatehouse.ts";
import { GithubPublicKeys } from "../../leaks/github-public-keys.ts";
import { handleLeakReport } from "../../leaks/leak-report.ts";
import { storableText } from "../../lib/storable-text.ts";
import { type FailedAuthGuard, requestContext } from "../authenticate.ts";
import { matchesSchema } from "../schemas.ts";

const Report = Type.Array(
  Type.Object({
    token: Type.String({ minLength: 1, maxLength: 1024 }),
    type: Type.Optional(Type.String({ maxLength: 200 })),
    url: Type.Optional(Type.String({ maxLength: 2048 })),
    source: Type.Optional(Type.String({ maxLength: 200 })),
  }),
  { maxItems: 1000 },
);

/**
 * POST /v1/leaks/github: GitHub's secret-scanning partner endpoint. The body is kept raw
 * because the signature covers its exact bytes; it is parsed only after it verifies.
 */
/** A report is a JSON array of matches: 1 MiB leaves room for large batches. */
const REPORT_LIMIT_BYTES = 1024 * 1024;

export function githubLeakRoutes(gatehouse: Gatehouse, guard: FailedAuthGuard): FastifyPluginAsync {
  const publicKeys = new GithubPublicKeys({
    url: gatehouse.config.githubSecretScanning.keysUrl,
    json: gatehouse.config.githubSecretScanning.keysJson,
  });
  return async (app) => {
    app.removeAllContentTypeParsers();
    app.addContentTypeParser("*", { parseAs: "buffer", bodyLimit: REPORT_LIMIT_BYTES }, (_request, body, done) =>
      done(null, body),
    );
    // The limit on the route as well, so a refusal names it (problem.ts reads the route's).
    app.post("/v1/leaks/github", { bodyLimit: REPORT_LIMIT_BYTES }, async (request, reply) => {
      const blocked = await guard.blockedFor(request.ip);
      if (blocked > 0) throw new RateLimitedError(blocked, "address");
      const identifier = request.headers["github-public-key-identifier"];
      const signature = request.headers["github-public-key-signature"];
      const body = request.body;
      // A refused report is a failed authentication: audited (without its body, which may
      // hold anything) and counted toward the address's block.
      const refused = (reason: "MISSING" | "NOT_VERIFIED") =>
        gatehouse.audit.record(
          auditEvent(requestContext(request, "anonymous"), gatehouse.clock(), {
            action: "auth.github_signature",
            outcome: "failure",
            detail: {
              reason,
              keyIdentifier: typeof identifier === "string" ? storableText(identifier.slice(0, 100)) : null,
            },
          }),
        );
      if (typeof identifier !== "string" || typeof signature !== "string" || !Buffer.isBuffer(body)) {
        refused("MISSING");
        await guard.fail(request.ip);
        throw new GatehouseError(
          "SIGNATURE_INVALID",
          "Send the payload with Github-Public-Key-Identifier and Github-Public-Key-Signature headers.",
        );
      }
      let verified: boolean;
      try {
        verified = await publicKeys.verify(identifier, signature, body);
      } catch (error) {
        request.log.warn({ err: error }, "could not load GitHub public keys");
        throw new GatehouseError("UPSTREAM_UNAVAILABLE", "GitHub's public keys could not be loaded; retry later.", {
          headers: { "retry-after": "60" },
        });
      }
      if (!verified) {
        refused("NOT_VERIFIED");
        await guard.fail(request.ip);
        throw new GatehouseError(
          "SIGNATURE_INVALID",
          "The payload signature does not verify against GitHub's public keys.",
        );
      }
      let payload: unknown;
      try {
        payload = JSON.parse(body.toString("utf8"));
      } catch {
        throw new GatehouseError("MALFORMED_JSON", "The request body is not valid JSON.");
      }
      if (!matchesSchema(request, Report, payload))
        throw new ValidationError("Expected a JSON array of {token, type, url, source}.");
      const verdicts = await handleLeakReport(gatehouse, payload, requestContext(request, "github"));
      reply.type("application/json");
      return verdicts.map((v) => ({ token_hash: v.tokenHash, token_type: v.tokenType, label: v.label }));
    });
  };
}
