import { isIP } from "node:net";
import { containsKeyShape } from "./key-shape.ts";
import { containsTokenShape } from "./token-shape.ts";

/**
 * Request headers as any Node framework hands them over: a Fetch `Headers` (Hono, the
 * Fetch API) or node:http's lower-cased object (node:http, Express, Fastify).
 */
export type HeaderBag = Headers | Record<string, string | string[] | undefined>;

/** The part of a request the guard reads. `url` is the request target, path and query. */
export interface RequestLike {
  headers: HeaderBag;
  url?: string | undefined;
  /**
   * node:http's header list as received (name, value, name, value…), on its requests and
   * Express's: the only place a second Authorization header still shows, as node keeps
   * the first in `headers` and drops the rest.
   */
  rawHeaders?: readonly string[] | undefined;
  /** Fastify's request: the node:http request underneath, for its `rawHeaders`. */
  raw?: { rawHeaders?: readonly string[] | undefined } | undefined;
  /**
   * The client's address as the framework reports it (Fastify and Express, after their
   * proxy trust settings); else the socket's peer (node:http).
   */
  ip?: string | undefined;
  socket?: { remoteAddress?: string | undefined } | undefined;
}

/** The address the request came from, when the request object says (see `RequestLike.ip`). */
export function clientAddress(request: RequestLike): string | undefined {
  const address = typeof request.ip === "string" ? request.ip : request.socket?.remoteAddress;
  return typeof address === "string" && isIP(address) !== 0 ? address : undefined;
}

export type PresentedCredential =
  | { kind: "none" }
  | { kind: "key"; key: string }
  /** Both `Authorization: Bearer` and `X-API-Key`, or Authorization more than once. */
  | { kind: "ambiguous" }
  /** Something that is or names a credential in the query string: refused, never verified. */
  | { kind: "in-url" };

/** Parameter names that carry credentials in other products (matches Gatehouse's own check). */
const CREDENTIAL_PARAMS = /^(?:api[_-]?key|apikey|access[_-]?token|token|key)$/i;

/** RFC 6750 §2.1 `b64token`, after the `Bearer` scheme (scheme names are case-insensitive, RFC 9110 §11.1). */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/**
 * Finds the key a request presents. Only two places count: `Authorization: Bearer <key>`
 * (RFC 6750 §2.1) and `X-API-Key: <key>`. A key in the query string is refused outright
 * (it leaks into access logs, browser history and Referer headers), even if a header
 * carries one too.
 */
export function presentedCredential(request: RequestLike): PresentedCredential {
  if (typeof request.url === "string" && credentialInQuery(request.url)) return { kind: "in-url" };
  const authorization = header(request.headers, "authorization");
  const apiKey = header(request.headers, "x-api-key");
  if (Array.isArray(authorization) || Array.isArray(apiKey)) return { kind: "ambiguous" };
  if (authorization !== undefined && repeatedAuthorization(request, authorization)) return { kind: "ambiguous" };
  // Another scheme (Basic, Digest…) is not ours: it presents nothing to this guard.
  const bearer =
    authorization !== undefined && /^Bearer(?: |$)/i.test(authorization) ? bearerToken(authorization) : undefined;
  if (bearer !== undefined && apiKey !== undefined) return { kind: "ambiguous" };
  if (bearer !== undefined) return { kind: "key", key: bearer };
  if (apiKey !== undefined) return { kind: "key", key: apiKey.trim() };
  return { kind: "none" };
}

export type PresentedToken =
  | { kind: "none" }
  | { kind: "token"; token: string }
  /** More than one Authorization header. */
  | { kind: "ambiguous" }
  /** A credential in the query string: refused, never verified. */
  | { kind: "in-url" };

/**
 * Finds the access token a request presents: `Authorization: Bearer <token>` and nowhere
 * else (RFC 6750 §2.1). The form body and query methods of RFC 6750 §2.2–2.3 are not
 * supported, and a credential in the query string is refused outright, even next to a
 * valid header: it has already leaked into logs.
 */
export function presentedToken(request: RequestLike): PresentedToken {
  if (typeof request.url === "string" && credentialInQuery(request.url)) return { kind: "in-url" };
  const authorization = header(request.headers, "authorization");
  if (Array.isArray(authorization)) return { kind: "ambiguous" };
  if (authorization !== undefined && repeatedAuthorization(request, authorization)) return { kind: "ambiguous" };
  if (authorization === undefined || !/^Bearer(?: |$)/i.test(authorization)) return { kind: "none" };
  return { kind: "token", token: bearerToken(authorization) };
}

/**
 * Whether the request carried Authorization more than once. node:http keeps the first
 * and drops the rest, while a proxy in front may judge the last: the two would disagree
 * about who is calling, so such a request is refused, as Gatehouse itself refuses it.
 * A Fetch `Headers` has no raw list: it joins repeats with ", " (RFC 9110 §5.3), which a
 * Bearer credential never holds (RFC 6750 §2.1 `b64token`), so there ", " after `Bearer`
 * is a repeat. Elsewhere a comma is only a malformed token (the one 401).
 */
function repeatedAuthorization(request: RequestLike, value: string): boolean {
  if (isFetchHeaders(request.headers)) return /^Bearer(?: |$)/i.test(value) && value.includes(", ");
  const raw = request.rawHeaders ?? request.raw?.rawHeaders;
  if (raw === undefined) return false;
  let seen = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name !== undefined && name.length === 13 && name.toLowerCase() === "authorization" && ++seen > 1) {
      return true;
    }
  }
  return false;
}

/** The token of a Bearer header; "" when the header says Bearer but holds no valid token. */
function bearerToken(value: string): string {
  return BEARER.exec(value)?.[1] ?? "";
}

function credentialInQuery(url: string): boolean {
  const queryAt = url.indexOf("?");
  if (queryAt < 0) return false;
  const hashAt = url.indexOf("#", queryAt);
  const query = url.slice(queryAt + 1, hashAt < 0 ? undefined : hashAt);
  if (query.length === 0) return false;
  // URLSearchParams decodes + and %XX (leniently), so an encoded key is found too.
  for (const [name, value] of new URLSearchParams(query)) {
    if (CREDENTIAL_PARAMS.test(name) || hasCredentialShape(name) || hasCredentialShape(value)) return true;
  }
  return hasCredentialShape(query);
}

function hasCredentialShape(text: string): boolean {
  return containsKeyShape(text) || containsTokenShape(text);
}

function header(headers: HeaderBag, name: string): string | string[] | undefined {
  // Duck-typed rather than `instanceof Headers`, so a Headers from another realm or polyfill counts.
  if (isFetchHeaders(headers)) return headers.get(name) ?? undefined;
  const direct = headers[name];
  if (direct !== undefined) return direct;
  // node:http lower-cases names; a hand-built object may not have.
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return value;
  }
  return undefined;
}

function isFetchHeaders(headers: HeaderBag): headers is Headers {
  return typeof headers.get === "function";
}
