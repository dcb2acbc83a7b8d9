import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import type { TypeBoxTypeProvider } from "@fastify/type-provider-typebox";
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from "fastify";
import { type DestinationStream, type Logger, pino } from "pino";
import { containsTokenShape, redactTokens } from "../../sdk/src/token-shape.ts";
import { auditEvent } from "../audit/context.ts";
import type { GatehouseConfig } from "../config/config.ts";
import { GatehouseError, NotFoundError } from "../errors/gatehouse-error.ts";
import type { Gatehouse } from "../gatehouse.ts";
import { keyAnywherePattern, keyHint } from "../keys/key-format.ts";
import { stdoutLog } from "../observability/log-destination.ts";
import { REFRESH_TOKEN_ANYWHERE } from "../tokens/opaque-token.ts";
import { FailedAuthGuard, requestContext } from "./authenticate.ts";
import { clientErrorProblem, errorHandler, sendProblem } from "./problem.ts";
import { auditRoutes } from "./routes/audit.ts";
import { authRoutes } from "./routes/auth.ts";
import { authSessionRoutes } from "./routes/auth-session.ts";
import { healthRoutes } from "./routes/health.ts";
import { jwksRoutes } from "./routes/jwks.ts";
import { keyRoutes } from "./routes/keys.ts";
import { githubLeakRoutes } from "./routes/leaks-github.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { usageRoutes } from "./routes/usage.ts";
import { userRoutes } from "./routes/users.ts";
import { verifyRoutes } from "./routes/verify.ts";

/** Query parameter names that carry credentials in other products; refused here. */
const CREDENTIAL_PARAMS = /(?:^|[?&;])(?:api[_-]?key|apikey|access[_-]?token|refresh[_-]?token|token|key)=/i;
const REFRESH_PARAM = /(?:^|[?&;])refresh[_-]?token=/i;
const ACCESS_PARAM = /(?:^|[?&;])access[_-]?token=/i;

/**
 * What to do instead, for the kind of credential found: each travels its own way, and
 * "rotate" means something different for each (a key is rotated, a token's sign-in ended).
 */
const URL_CREDENTIAL_ADVICE = {
  key: "Send the key in the Authorization header (Bearer), and rotate it now: this request put it in URL logs on its way here.",
  refresh:
    'Send a refresh token in the JSON body ({"refresh_token": "…"}) or its cookie, and end its sign-in now (POST /auth/logout with it): this request put it in URL logs on its way here.',
  access:
    "Send an access token in the Authorization header (Bearer), and log out now (POST /auth/logout): this request put it in URL logs on its way here.",
  unknown:
    "Send API keys and access tokens in the Authorization header and refresh tokens in the JSON body, and replace the credential now: this request put it in URL logs on its way here.",
} as const;

/** The charset parameter of a Content-Type header, quoted or not. */
const CHARSET = /;\s*charset\s*=\s*"?([^";\s]+)/i;

/** How long a request's headers and body may take to arrive. */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * The server's logger: pino at the configured level, with credentials kept out. Made
 * before the app, so the parts that log outside requests (the audit log's and usage
 * counts' writes, housekeeping) write to the same place as the requests do.
 */
export function createLogger(config: GatehouseConfig, stream?: DestinationStream): Logger {
  const keyInUrl = keyAnywherePattern(config.keys.prefix);
  return pino(
    {
      level: config.logLevel,
      // Credentials never reach the logs: headers that carry them are redacted, and the
      // request line is logged without its query string and with any key in the path
      // cut down to its hint.
      redact: ["req.headers.authorization", 'req.headers["x-api-key"]', "req.headers.cookie"],
      serializers: {
        req: (req: FastifyRequest) => ({
          method: req.method,
          url: redactPath(req.url, keyInUrl),
          remoteAddress: req.ip,
        }),
      },
    },
    stream ?? stdoutLog(),
  );
}

export function buildApp(
  gatehouse: Gatehouse,
  options: {
    /** The logger made by `createLogger` (default: one writing to stdout). */
    logger?: Logger;
  } = {},
): FastifyInstance {
  const { config } = gatehouse;
  const keyInUrl = keyAnywherePattern(config.keys.prefix);
  const https = config.tls ? { key: readFileSync(config.tls.keyFile), cert: readFileSync(config.tls.certFile) } : null;
  // `https: null` is plain HTTP. The HTTPS server type only differs in `raw`; we type the
  // instance as the default server so routes need no generic juggling.
  const app = (Fastify as unknown as (options: FastifyServerOptions & { https: object | null }) => FastifyInstance)({
    https,
    loggerInstance: options.logger ?? createLogger(config),
    bodyLimit: config.bodyLimitBytes,
    // The whole request (headers and body) must arrive within 30 s, else 408 and the
    // connection closes. Fastify's default is none: a client that sent headers and then a
    // body a byte at a time, or never, held its socket and buffer for good (slowloris).
    // Node checks every 30 s, so such a connection lasts 30–60 s.
    requestTimeout: REQUEST_TIMEOUT_MS,
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    return503OnClosing: true,
    // What Node's HTTP parser refuses before there is a request gets a problem document.
    clientErrorHandler: clientErrorProblem,
    // Errors Fastify raises before routing (a URL that does not decode) get our problem
    // document too, not Fastify's own JSON; such a URL may still carry a key, refused as such.
    frameworkErrors: (error, request, reply) => {
      reply.header("x-request-id", request.id);
      reply.header("cache-control", "no-store");
      return errorHandler(refuseCredentialInUrl(request) ?? error, request, reply);
    },
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Node's own headers timeout (60 s) would outlast the whole request's: bring it in line.
  app.server.headersTimeout = REQUEST_TIMEOUT_MS;
  const guard = new FailedAuthGuard();

  // Fastify parses text/plain by default; this API speaks JSON only, so anything else is 415.
  app.removeContentTypeParser("text/plain");
  app.decorateRequest("principal", null);
  app.setErrorHandler(errorHandler);
  // An empty body sent as JSON (curl -H 'content-type: application/json' with no data,
  // as many clients do for a POST) is no body: routes whose body is optional take it, and
  // the others say which fields they need, rather than "not valid JSON".
  const json = app.getDefaultJsonParser("error", "error");
  app.removeContentTypeParser("application/json");
  app.addContentTypeParser("application/json", { parseAs: "string" }, (request, body, done) => {
    // JSON is UTF-8 (RFC 8259): a body declared compressed or in another charset would be
    // read as something it is not, so it is refused rather than guessed at.
    const encoding = request.headers["content-encoding"];
    if (encoding !== undefined && encoding.toLowerCase() !== "identity") {
      return done(new GatehouseError("UNSUPPORTED_MEDIA_TYPE", "Send the body uncompressed (no Content-Encoding)."));
    }
    const charset = CHARSET.exec(request.headers["content-type"] ?? "")?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
      return done(
        new GatehouseError("UNSUPPORTED_MEDIA_TYPE", "Send the body as UTF-8 JSON (charset=utf-8, or none)."),
      );
    }
    if (body === "") return done(null, undefined);
    return json(request, body as string, (error, parsed) => {
      // Fastify's parser reports a "__proto__" or "constructor.prototype" member (refused
      // against prototype pollution) as invalid JSON; a client whose JSON is valid must be
      // told what is actually refused. Only failures are parsed twice.
      if (error && validJson(body as string)) {
        return done(
          new GatehouseError(
            "VALIDATION_FAILED",
            'body: the member names "__proto__" and "constructor" (with "prototype") are refused.',
          ),
        );
      }
      done(error, parsed);
    });
  });
  app.setNotFoundHandler((request, reply) => {
    const path = redactPath(request.url, keyInUrl);
    // Keys are revoked, never deleted (their record and audit trail stay): say so.
    const hint =
      request.method === "DELETE" && /^\/v1\/keys\/[^/]+$/.test(path)
        ? " Keys are revoked, not deleted: POST /v1/keys/{id}/revoke."
        : "";
    return sendProblem(reply, new NotFoundError(`No route for ${request.method} ${path}.${hint}`));
  });

  /**
   * A credential in a URL ends up in proxy logs, browser history and Referer headers:
   * refused loudly so the client is fixed, and recorded so the key can be rotated. Null
   * when the URL carries none.
   */
  function refuseCredentialInUrl(request: FastifyRequest): GatehouseError | null {
    const url = request.url;
    const decoded = url.length > 20 ? percentDecodedAscii(url) : null;
    const match = decoded === null ? null : keyInUrl.exec(decoded);
    // A refresh token is as much a credential as a key; its id part is not secret.
    const refresh = decoded === null || match ? null : REFRESH_TOKEN_ANYWHERE.exec(decoded);
    // An access token is as much a credential, whatever the parameter is called (the SDK's
    // guards refuse it the same way): `?next=…&t=<jwt>` leaks it as surely as `access_token=`.
    const access = decoded !== null && !match && !refresh && containsTokenShape(decoded);
    const queryAt = url.indexOf("?");
    const query = queryAt >= 0 ? percentDecodedAscii(url.slice(queryAt)) : null;
    if (!match && !refresh && !access && !(query !== null && CREDENTIAL_PARAMS.test(query))) return null;
    gatehouse.audit.record(
      auditEvent(requestContext(request, "anonymous"), gatehouse.clock(), {
        action: "auth.credential_in_url",
        outcome: "failure",
        detail: match ? { hint: keyHint(match[0]) } : refresh ? { refreshTokenId: refresh[1] } : null,
      }),
    );
    const kind = match
      ? "key"
      : refresh || (query !== null && REFRESH_PARAM.test(query))
        ? "refresh"
        : access || (query !== null && ACCESS_PARAM.test(query))
          ? "access"
          : "unknown";
    return new GatehouseError(
      "KEY_IN_URL",
      `Credentials must not be sent in the URL (they leak into logs and history). ${URL_CREDENTIAL_ADVICE[kind]}`,
    );
  }

  const hsts = https || config.trustedProxies.length > 0;
  // A callback hook, not an async one: it runs on every request, and this saves a promise.
  app.addHook("onRequest", (request, reply, done) => {
    reply.header("x-request-id", request.id);
    reply.header("cache-control", "no-store");
    reply.header("x-content-type-options", "nosniff");
    if (hsts) reply.header("strict-transport-security", "max-age=63072000; includeSubDomains");
    done(
      refuseCredentialInUrl(request) ?? refuseRepeatedAuthorization(request) ?? refuseNulInUrl(request) ?? undefined,
    );
  });

  gatehouse.metrics.install(app);
  app.register(healthRoutes(gatehouse));
  app.register(metricsRoutes(gatehouse, guard));
  app.register(keyRoutes(gatehouse, guard));
  app.register(verifyRoutes(gatehouse, guard));
  app.register(usageRoutes(gatehouse, guard));
  app.register(auditRoutes(gatehouse, guard));
  app.register(githubLeakRoutes(gatehouse, guard));
  app.register(jwksRoutes(gatehouse));
  app.register(authRoutes(gatehouse));
  app.register(authSessionRoutes(gatehouse));
  app.register(userRoutes(gatehouse, guard));
  return app;
}

/**
 * U+0000 in the URL (%00): no id, filter or date holds one, and PostgreSQL refuses it in
 * a query parameter, so a filter with one was a 500 there and an empty answer on SQLite.
 */
function refuseNulInUrl(request: FastifyRequest): GatehouseError | null {
  return request.url.includes("%00")
    ? new GatehouseError("VALIDATION_FAILED", "The URL must not contain U+0000 (%00).")
    : null;
}

/**
 * Two Authorization headers: Node keeps the first and drops the rest, while a proxy in
 * front may judge the last, so the two would disagree about who is calling. Refused.
 */
function refuseRepeatedAuthorization(request: FastifyRequest): GatehouseError | null {
  if (request.headers.authorization === undefined) return null;
  const raw = request.raw.rawHeaders;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length === 13 && name.toLowerCase() === "authorization") seen++;
  }
  return seen > 1
    ? new GatehouseError("VALIDATION_FAILED", `Send one Authorization header; this request has ${seen}.`)
    : null;
}

/**
 * The URL with every percent-escape of an ASCII character decoded, and nothing else
 * touched. A key is ASCII, so this finds one however it was escaped, and unlike
 * decodeURIComponent it cannot fail: one malformed escape elsewhere in the URL must not
 * hide a key from the check.
 */
function percentDecodedAscii(url: string): string {
  // Repeatedly (a few rounds): a credential escaped twice (`%252E`) is still a credential.
  let decoded = url;
  for (let round = 0; round < 3 && decoded.includes("%"); round++) {
    const next = decoded.replace(/%([0-7][0-9A-Fa-f])/g, (_, hex: string) =>
      String.fromCharCode(Number.parseInt(hex, 16)),
    );
    if (next === decoded) break;
    decoded = next;
  }
  return decoded;
}

function validJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** The path of a URL for logs and messages: no query string, and any key as its hint. */
function redactPath(url: string, keyInUrl: RegExp): string {
  const path = url.split("?")[0] ?? "";
  // Nothing this short can hold a key (52+ characters) or a refresh token (75).
  if (path.length <= 20) return path;
  const decoded = percentDecodedAscii(path);
  if (!keyInUrl.test(decoded) && !REFRESH_TOKEN_ANYWHERE.test(decoded) && !containsTokenShape(decoded)) return path;
  return redactTokens(
    decoded
      .replace(new RegExp(keyInUrl.source, "g"), (key) => keyHint(key))
      .replace(new RegExp(REFRESH_TOKEN_ANYWHERE.source, "g"), (_, id: string) => `${id}.…`),
    "<access token>",
  );
}
