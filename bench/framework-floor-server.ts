/**
 * The framework floor: `POST /v1/keys/verify` as Gatehouse's Fastify settings make it,
 * with none of Gatehouse's work. The same Fastify options as src/http/app.ts (pino with
 * the same redaction and request serializer at GATEHOUSE_LOG_LEVEL=warn, a random UUID
 * per request, 503 while closing, the body limit, ajv's options), the same `onRequest`
 * work (request id, `cache-control`, `nosniff`, the check for a credential in the URL),
 * Gatehouse's own metrics hook (src/observability/metrics.ts), the verify route's own
 * JSON schemas, both `RateLimit` headers from src/ratelimit/key-rate-limiter.ts, and an
 * answer of verify's shape. What it leaves out: authenticating the caller, verifying the
 * key, counting its rate limit and its use.
 *
 * Why: the verify target (0.70x the bare route) is a budget for everything Gatehouse does
 * beyond the bare route. This server measures how much of that budget the framework
 * settings alone take on the machine at hand, so a run shows what is left for the work
 * (bench/run.ts prints it next to the yardstick). If src/http/app.ts changes its Fastify
 * settings or hooks, change them here too. Prints its URL on stdout.
 */
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyInstance } from "fastify";
import { VerifyAnswer, VerifyBody } from "../src/http/routes/verify.ts";
import { Metrics } from "../src/observability/metrics.ts";
import { rateLimitHeaders } from "../src/ratelimit/key-rate-limiter.ts";
import { SqliteStorage } from "../src/storage/sqlite/sqlite-storage.ts";

const CREDENTIAL_PARAMS = /(?:^|[?&])(?:api[_-]?key|apikey|access_token|token|key)=/i;
const keyInUrl = /gate_[0-9A-Za-z]{49}/;

const app = Fastify({
  logger: {
    level: "warn",
    redact: ["req.headers.authorization", 'req.headers["x-api-key"]', "req.headers.cookie"],
    serializers: { req: (req) => ({ method: req.method, url: req.url.split("?")[0] ?? "", remoteAddress: req.ip }) },
  },
  bodyLimit: 64 * 1024,
  trustProxy: false,
  genReqId: () => randomUUID(),
  requestIdHeader: false,
  return503OnClosing: true,
  ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
}).withTypeProvider<TypeBoxTypeProvider>();

app.removeContentTypeParser("text/plain");
app.decorateRequest("principal", null);
app.addHook("onRequest", (request, reply, done) => {
  reply.header("x-request-id", request.id);
  reply.header("cache-control", "no-store");
  reply.header("x-content-type-options", "nosniff");
  const url = request.url;
  const match = url.length > 20 ? keyInUrl.exec(url) : null;
  const queryAt = url.indexOf("?");
  if (match || (queryAt >= 0 && CREDENTIAL_PARAMS.test(url.slice(queryAt)))) return done(new Error("key in URL"));
  done();
});

// Gatehouse's metrics need a storage only to tell SQLite from PostgreSQL.
const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-floor-"));
const storage = SqliteStorage.open(join(dataDir, "floor.db"));
new Metrics(storage).install(app as unknown as FastifyInstance);

const policy = { limit: 1_000_000_000, windowSeconds: 60 };
const scopes = ["payments:read", "payments:write"];
app.get("/healthz", async () => ({ status: "ok" }));
app.post("/v1/keys/verify", { schema: { body: VerifyBody, response: { 200: VerifyAnswer } } }, (request, reply) => {
  const now = Date.now();
  const ratelimit = { allowed: true, limit: policy.limit, remaining: policy.limit - 1, reset: now + 60_000 };
  reply.headers(rateLimitHeaders(ratelimit, policy, now));
  reply.send({
    valid: request.body.key.length > 0,
    keyId: "key_0000000000000000000000000",
    ownerId: null,
    scopes,
    expiresAt: new Date(now + 86_400_000).toISOString(),
    ratelimit,
  });
});

const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${address}\n`);
process.once(
  "SIGTERM",
  () =>
    void app.close().then(async () => {
      await storage.close();
      rmSync(dataDir, { recursive: true, force: true });
      process.exit(0);
    }),
);
