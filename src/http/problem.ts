import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import type { FastifyError, FastifyReply, FastifyRequest } from "fastify";
import { ERROR_CODES, type ErrorCode } from "../errors/codes.ts";
import { GatehouseError, StorageUnavailableError } from "../errors/gatehouse-error.ts";
import { isSqliteClosed, isSqliteUnavailable } from "../storage/sqlite/errors.ts";
import { validationProblems } from "./validation-detail.ts";

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

/** Validation problems listed in one answer. */
const MAX_LISTED = 20;

const FASTIFY_CODES: Record<string, [ErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: ["PAYLOAD_TOO_LARGE", "The request body is larger than this endpoint accepts."],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [
    "UNSUPPORTED_MEDIA_TYPE",
    "Send the body as JSON with the header `Content-Type: application/json` (curl -d sends another type unless told).",
  ],
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
  if (error instanceof GatehouseError) {
    // A deadlock that came back on every retry is a lock-order problem worth finding: the
    // client gets a 503, the log gets what PostgreSQL said.
    if (error.code === "BUSY" && error.cause !== undefined) {
      request.log.warn({ err: error.cause }, "storage conflict outlived its retries");
    }
    return sendProblem(reply, error);
  }
  const fastifyError = error as FastifyError;
  if (fastifyError.validation) {
    // Every problem is found (allErrors), but at most MAX_LISTED are told: a body with
    // thousands of unknown properties must not get an answer ten times its size.
    const all = validationProblems(fastifyError, request);
    const errors = all.slice(0, MAX_LISTED);
    const more = all.length > MAX_LISTED ? `; and ${all.length - MAX_LISTED} more` : "";
    return sendProblem(
      reply,
      new GatehouseError("VALIDATION_FAILED", `${errors.map((e) => `${e.path}: ${e.message}`).join("; ")}${more}`, {
        extensions: { errors },
      }),
    );
  }
  const known = fastifyError.code ? FASTIFY_CODES[fastifyError.code] : undefined;
  if (known && fastifyError.code === "FST_ERR_CTP_BODY_TOO_LARGE") {
    // The limit differs by route (GATEHOUSE_BODY_LIMIT_BYTES; 1 MiB for GitHub's reports).
    const limit = request.routeOptions.bodyLimit;
    return sendProblem(reply, new GatehouseError(known[0], `${known[1].slice(0, -1)} (at most ${limit} bytes).`));
  }
  if (known) return sendProblem(reply, new GatehouseError(known[0], known[1]));
  if (error instanceof SyntaxError && fastifyError.statusCode === 400) {
    return sendProblem(reply, new GatehouseError("MALFORMED_JSON", "The request body is not valid JSON."));
  }
  if (typeof fastifyError.statusCode === "number" && fastifyError.statusCode >= 400 && fastifyError.statusCode < 500) {
    request.log.info({ err: error }, "client error");
    return sendProblem(reply, new GatehouseError("VALIDATION_FAILED", "The request is not valid."));
  }
  if (isSqliteUnavailable(error)) {
    // A full or read-only disk is the operator's to fix: logged as an error, with SQLite's
    // reason, and answered 503 so clients retry rather than report a bug.
    request.log.error({ err: error }, "storage cannot take the request");
    return sendProblem(reply, new StorageUnavailableError(error));
  }
  if (isSqliteClosed(error)) {
    // Expected while the server stops (a request whose client left is not waited for);
    // at any other time, a bug: the error goes with the line.
    request.log.warn({ err: error }, "storage was closed while this request was running");
    return sendProblem(reply, new StorageUnavailableError(error));
  }
  request.log.error({ err: error }, "unhandled error");
  return sendProblem(reply, new GatehouseError("INTERNAL", "Something went wrong on our side; it has been logged."));
}
