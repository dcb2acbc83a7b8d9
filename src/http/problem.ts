import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ERROR_CODES, type ErrorCode } from "../errors/codes.ts";
import { GatehouseError } from "../errors/gatehouse-error.ts";
import { LIMIT_PATTERN } from "./schemas.ts";

/** Sends an RFC 9457 problem document. */
export function sendProblem(reply: FastifyReply, error: GatehouseError): FastifyReply {
  if (error.headers) reply.headers(error.headers);
  return reply
    .code(error.status)
    .type("application/problem+json")
    .send({
      type: `urn:gatehouse:error:${error.code}`,
      title: ERROR_CODES[error.code].title,
      status: error.status,
      detail: error.detail,
      code: error.code,
      requestId: reply.request.id,
      ...error.extensions,
    });
}

/**
 * Fastify's `clientErrorHandler`: what Node's HTTP parser refuses before there is a
 * request (headers over its size limit, a request that never finishes arriving, a
 * malformed request line or Content-Length) gets a problem document too, written to the
 * socket by hand because no reply exists yet, then the connection is closed.
 */
export function clientErrorProblem(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === "ECONNRESET" || socket.destroyed) return;
  const [code, detail]: [ErrorCode, string] =
    error.code === "HPE_HEADER_OVERFLOW"
      ? ["HEADERS_TOO_LARGE", "The request headers exceed 16 KiB. Send shorter headers."]
      : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? ["REQUEST_TIMEOUT", "The request did not arrive in time."]
        : ["VALIDATION_FAILED", "The request is not valid HTTP."];
  const { status, title } = ERROR_CODES[code];
  const body = JSON.stringify({ type: `urn:gatehouse:error:${code}`, title, status, detail, code });
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(error);
}

const FASTIFY_CODES: Record<string, [ErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ["PAYLOAD_TOO_LARGE", "The request body is larger than this endpoint accepts."],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: ["UNSUPPORTED_MEDIA_TYPE", "Send the body as application/json."],
  FST_ERR_CTP_INVALID_JSON_BODY: ["MALFORMED_JSON", "The request body is not valid JSON."],
  FST_ERR_CTP_EMPTY_JSON_BODY: ["MALFORMED_JSON", "The content type is JSON but the body is empty."],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: ["VALIDATION_FAILED", "Content-Length does not match the body."],
  FST_ERR_CTP_INVALID_TYPE: ["UNSUPPORTED_MEDIA_TYPE", "The content type is not valid."],
  FST_ERR_BAD_URL: ["VALIDATION_FAILED", "The URL is not valid."],
  FST_ERR_MAX_PARAM_LENGTH: ["VALIDATION_FAILED", "A part of the path is longer than any id this API uses."],
  FST_ERR_ASYNC_CONSTRAINT: ["VALIDATION_FAILED", "The request could not be routed."],
};

/**
 * One error handler for the whole API: known errors become problem documents with their
 * stable code; anything else is logged with its stack and answered with a bare 500.
 */
export function errorHandler(error: FastifyError | Error, request: FastifyRequest, reply: FastifyReply) {
  if (error instanceof GatehouseError) return sendProblem(reply, error);
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    const errors = oneOfConstants(
      fastifyError.validation.map((issue) => ({
        path: `${fastifyError.validationContext ?? ""}${issue.instancePath || ""}`,
        message:
          fastifyError.validationContext === "body" && !issue.instancePath && issue.keyword === "type"
            ? bodyNotAnObject(request)
            : describeIssue(issue),
        keyword: issue.keyword,
        allowed: issue.keyword === "const" ? issue.params.allowedValue : undefined,
      })),
    );
    return sendProblem(
      reply,
      new GatehouseError("VALIDATION_FAILED", errors.map((e) => `${e.path}: ${e.message}`).join("; "), {
        extensions: { errors },
      }),
    );
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known) return sendProblem(reply, new GatehouseError(known[0], known[1]));
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return sendProblem(reply, new GatehouseError("MALFORMED_JSON", "The request body is not valid JSON."));
  }
  if (typeof fastifyError.statusCode === "number" && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    request.log.info({ err: error }, "client error");
    return sendProblem(reply, new GatehouseError("VALIDATION_FAILED", "The request is not valid."));
  }
  request.log.error({ err: error }, "unhandled error");
  return sendProblem(reply, new GatehouseError("INTERNAL", "Something went wrong on our side; it has been logged."));
}

/**
 * A choice among fixed values (a union of literals: `interval`, `delivery`, `status`, …)
 * fails in Ajv as one "must be equal to constant" per value and a closing "must match a
 * schema in anyOf", none naming a value. Those of one path become one message that lists
 * the values.
 */
function oneOfConstants(
  issues: Array<{ path: string; message: string; keyword: string; allowed: unknown }>,
): Array<{ path: string; message: string }> {
  const choices = new Map<string, unknown[]>();
  for (const issue of issues) {
    if (issue.keyword !== "const") continue;
    const values = choices.get(issue.path) ?? [];
    values.push(issue.allowed);
    choices.set(issue.path, values);
  }
  const merged: Array<{ path: string; message: string }> = [];
  for (const issue of issues) {
    const values = choices.get(issue.path);
    const isChoice = values !== undefined && issues.some((i) => i.path === issue.path && i.keyword === "anyOf");
    if (!isChoice) {
      merged.push({ path: issue.path, message: issue.message });
    } else if (issue.keyword === "anyOf") {
      merged.push({ path: issue.path, message: `must be one of ${values.map((v) => JSON.stringify(v)).join(", ")}` });
    }
  }
  return merged;
}

/**
 * No body, or not an object: Ajv says only "must be object". Name what the route needs,
 * which is what the caller was missing.
 */
function bodyNotAnObject(request: FastifyRequest): string {
  const schema = request.routeOptions.schema?.body as { required?: unknown } | undefined;
  const required = Array.isArray(schema?.required) ? schema.required.map((name) => JSON.stringify(name)) : [];
  return required.length > 0
    ? `must be a JSON object with ${required.join(", ")}`
    : "must be a JSON object (send {} when no field is needed)";
}

/** Patterns whose regular expression says little to a reader, and what they mean. */
const PATTERN_MEANINGS: Record<string, string> = { [LIMIT_PATTERN]: "must be a whole number from 1 to 100" };

function describeIssue(issue: {
  keyword: string;
  message?: string | undefined;
  params: Record<string, unknown>;
}): string {
  if (issue.keyword === "additionalProperties") return `unknown property "${String(issue.params.additionalProperty)}"`;
  if (issue.keyword === "required") return `missing property "${String(issue.params.missingProperty)}"`;
  if (issue.keyword === "pattern") {
    const meaning = PATTERN_MEANINGS[String(issue.params.pattern)];
    if (meaning) return meaning;
  }
  return issue.message ?? issue.keyword;
}
