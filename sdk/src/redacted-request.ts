/**
 * What a request log line may say about a request: Fastify's default request fields, with
 * the URL cut at its query string. A credential sent in the query (`?api_key=gate_…`) is
 * refused by the guards with 400 KEY_IN_URL, but the framework logs the request line
 * before any guard runs, so without this the key would be written to the logs anyway.
 *
 * For Fastify: `Fastify({ logger: { serializers: { req: redactedRequest } } })`; for
 * pino-http, the same `serializers` option. It reads only the fields named below, so it
 * takes a Fastify request or a bare `IncomingMessage`.
 */
/**
 * The request log fields, only those known (so they also suit `exactOptionalPropertyTypes`).
 * A type, not an interface: Fastify's serializer type has an index signature, which only a
 * type alias satisfies implicitly.
 */
export type RequestLogFields = {
  method?: string;
  url?: string;
  host?: string;
  remoteAddress?: string;
  remotePort?: number;
};

export function redactedRequest(request: {
  method?: string | undefined;
  url?: string | undefined;
  host?: string | undefined;
  ip?: string | undefined;
  socket?: { remoteAddress?: string | undefined; remotePort?: number | undefined } | null | undefined;
}): RequestLogFields {
  const fields: RequestLogFields = {};
  if (request.method !== undefined) fields.method = request.method;
  // The fragment never reaches a server, but a URL built by hand might carry one.
  if (request.url !== undefined) fields.url = request.url.split(/[?#]/, 1)[0] ?? "";
  if (request.host !== undefined) fields.host = request.host;
  const remoteAddress = request.ip ?? request.socket?.remoteAddress;
  if (remoteAddress !== undefined) fields.remoteAddress = remoteAddress;
  const remotePort = request.socket?.remotePort;
  if (remotePort !== undefined) fields.remotePort = remotePort;
  return fields;
}
