import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import { ERROR_CODES } from "../../src/errors/codes.ts";
import { REQUEST_TIMEOUT_MS } from "../../src/http/app.ts";
import { generateKey } from "../../src/keys/key-format.ts";
import { manualClock } from "../../src/lib/clock.ts";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: problem documents are read field by field and asserted.
  body: any;
}

/**
 * Sends a raw request and checks what must hold for every answer: never a 5xx, never a
 * stack trace or internal error text, and every error is a complete problem document.
 */
/** Writes `raw` bytes to the server and reads until it closes the connection. */
function rawExchange(server: TestServer, raw: string): Promise<string> {
  const { hostname, port } = new URL(server.url);
  return new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.end(raw));
    let text = "";
    socket.on("data", (chunk) => {
      text += chunk.toString();
    });
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });
}

async function send(
  server: TestServer,
  method: string,
  path: string,
  options: { body?: string | Uint8Array; headers?: Record<string, string>; key?: string | null } = {},
): Promise<Answer> {
  const key = options.key === undefined ? server.adminKey : options.key;
  const headers: Record<string, string> = { ...options.headers };
  if (key !== null) headers.authorization ??= `Bearer ${key}`;
  if (options.body !== undefined) headers["content-type"] ??= "application/json";
  const response = await fetch(`${server.url}${path}`, {
    method,
    headers,
    ...(options.body !== undefined ? { body: options.body } : {}),
  });
  const text = await response.text();
  const where = `${method} ${path.slice(0, 80)} -> ${response.status} ${text.slice(0, 300)}`;
  assert.ok(response.status < 500, `no 5xx: ${where}`);
  assert.doesNotMatch(
    text,
    /\n\s+at |\bat [\w.<>]+ \(|node:internal|[A-Za-z]*Error: |\.ts:\d+/,
    `no internals: ${where}`,
  );
  let body: unknown = null;
  if (text) body = JSON.parse(text);
  if (response.status >= 400) {
    assert.equal(response.headers.get("content-type"), "application/problem+json; charset=utf-8", where);
    const problem = body as Record<string, unknown>;
    for (const member of ["type", "title", "detail", "code"]) {
      assert.equal(typeof problem[member], "string", `${member} in ${where}`);
    }
    assert.equal(problem.status, response.status, where);
    const registered = ERROR_CODES[problem.code as keyof typeof ERROR_CODES];
    assert.ok(registered, `registered code: ${where}`);
    assert.equal(registered.status, response.status, where);
    assert.equal(problem.title, registered.title);
    assert.equal(problem.type, `urn:gatehouse:error:${problem.code}`);
    assert.equal(problem.requestId, response.headers.get("x-request-id"));
  }
  return { status: response.status, headers: response.headers, text, body };
}

const json = (value: unknown) => JSON.stringify(value);

for (const backend of backends()) {
  describe(`hostile and malformed input over HTTP (${backend.name})`, () => {
    let server: TestServer;
    const clock = manualClock(Date.now());
    const logs: string[] = [];
    const secrets: string[] = [];
    before(async () => {
      server = await startServer(backend, {
        clock,
        env: { GATEHOUSE_LOG_LEVEL: "trace" },
        logStream: { write: (line: string) => void logs.push(line) },
      });
      secrets.push(server.adminKey);
    });
    after(() => server.close());

    const createKey = async (body: Record<string, unknown>) => {
      const created = await send(server, "POST", "/v1/keys", { body: json(body) });
      assert.equal(created.status, 201, created.text);
      secrets.push(created.body.key);
      return { id: created.body.id as string, key: created.body.key as string };
    };

    test("malformed JSON is 400 MALFORMED_JSON", async () => {
      for (const body of ['{"name": ', '{"name":"x",}', "{'name':'x'}", "nul", '"\\u12"', "\u0000"]) {
        const r = await send(server, "POST", "/v1/keys", { body });
        assert.equal(r.status, 400, body);
        assert.equal(r.body.code, "MALFORMED_JSON", body);
      }
      // An empty body sent as JSON is no body: the answer says what the route needs.
      const empty = await send(server, "POST", "/v1/keys", { body: "" });
      assert.equal(empty.status, 400);
      assert.equal(empty.body.code, "VALIDATION_FAILED");
      assert.equal(empty.body.detail, 'body: must be a JSON object with "name", "scopes"');
      // The parser refuses prototype pollution outright.
      const proto = await send(server, "POST", "/v1/keys", { body: '{"name":"x","scopes":[],"__proto__":{"a":1}}' });
      assert.equal(proto.status, 400);
      // That JSON is valid: the answer names what is refused rather than calling it malformed.
      for (const body of [
        '{"name":"x","scopes":[],"__proto__":{"a":1}}',
        '{"name":"x","scopes":[],"metadata":{"constructor":{"prototype":{"a":1}}}}',
      ]) {
        const refused = await send(server, "POST", "/v1/keys", { body });
        assert.equal(refused.status, 400, body);
        assert.equal(refused.body.code, "VALIDATION_FAILED", body);
        assert.match(refused.body.detail, /"__proto__" and "constructor"/, body);
      }
    });

    test("a body over the limit (64 KiB by default) is 413 PAYLOAD_TOO_LARGE", async () => {
      const limit = 64 * 1024;
      assert.equal(server.gatehouse.config.bodyLimitBytes, limit);
      const padding = (size: number) => {
        const head = '{"name":"big","scopes":[],"metadata":{"pad":"';
        const tail = '"}}';
        return head + "x".repeat(size - head.length - tail.length) + tail;
      };
      const over = await send(server, "POST", "/v1/keys", { body: padding(limit + 1) });
      assert.equal(over.status, 413);
      assert.equal(over.body.code, "PAYLOAD_TOO_LARGE");
      assert.match(over.body.detail, /\(at most 65536 bytes\)/, "the answer names the limit");
      // At the limit the body is read and judged on its content (metadata is capped at 4 KiB).
      const at = await send(server, "POST", "/v1/keys", { body: padding(limit) });
      assert.equal(at.status, 400);
      assert.equal(at.body.code, "VALIDATION_FAILED");
      const verify = await send(server, "POST", "/v1/keys/verify", { body: `{"key":"${"a".repeat(limit)}"}` });
      assert.equal(verify.status, 413);
    });

    test("a body that is not JSON is 415 UNSUPPORTED_MEDIA_TYPE", async () => {
      for (const type of [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "multipart/form-data",
      ]) {
        const r = await send(server, "POST", "/v1/keys", { body: "name=x", headers: { "content-type": type } });
        assert.equal(r.status, 415, type);
        assert.equal(r.body.code, "UNSUPPORTED_MEDIA_TYPE", type);
      }
      // JSON is UTF-8 and uncompressed here: a body declared otherwise is refused, not guessed at.
      const body = json({ name: "declared", scopes: [] });
      for (const headers of [
        { "content-type": "application/json", "content-encoding": "gzip" },
        { "content-type": "application/json; charset=utf-16le" },
        { "content-type": 'application/json; charset="iso-8859-1"' },
      ]) {
        const r = await send(server, "POST", "/v1/keys", { body, headers });
        assert.equal(r.status, 415, JSON.stringify(headers));
        assert.equal(r.body.code, "UNSUPPORTED_MEDIA_TYPE");
      }
      for (const headers of [
        { "content-type": "application/json; charset=UTF-8" },
        { "content-type": "application/json", "content-encoding": "identity" },
      ]) {
        assert.equal((await send(server, "POST", "/v1/keys", { body, headers })).status, 201, JSON.stringify(headers));
      }
    });

    test("unknown properties are 400 and the answer names them", async () => {
      const r = await send(server, "POST", "/v1/keys", { body: json({ name: "x", scopes: [], admin: true }) });
      assert.equal(r.status, 400);
      assert.equal(r.body.code, "VALIDATION_FAILED");
      assert.match(r.body.detail, /unknown property "admin"/);
      assert.deepEqual(r.body.errors, [{ path: "body", message: 'unknown property "admin"' }]);
      const nested = await send(server, "POST", "/v1/keys", {
        body: json({ name: "x", scopes: [], rateLimit: { limit: 1, windowSeconds: 1, burst: 5 } }),
      });
      assert.equal(nested.status, 400);
      assert.match(nested.body.detail, /body\/rateLimit: unknown property "burst"/);
      const verify = await send(server, "POST", "/v1/keys/verify", { body: json({ key: "x", scope: ["a"] }) });
      assert.equal(verify.status, 400);
      assert.match(verify.body.detail, /unknown property "scope"/);
      const query = await send(server, "GET", "/v1/keys?owner=x");
      assert.equal(query.status, 400);
      assert.match(query.body.detail, /unknown property "owner"/);
      // Thousands of them: the answer lists twenty and counts the rest (it must not be a
      // way to make the server send ten times what it was sent).
      const many = Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`p${i}`, 1]));
      const flood = await send(server, "POST", "/v1/keys", { body: json({ name: "x", scopes: [], ...many }) });
      assert.equal(flood.status, 400);
      assert.equal(flood.body.errors.length, 20);
      assert.match(flood.body.detail, /; and 2980 more$/);
      assert.ok(flood.text.length < 5000, String(flood.text.length));
      const longName = await send(server, "POST", "/v1/keys", {
        body: `{"name":"x","scopes":[],"${"n".repeat(5000)}":1}`,
      });
      assert.ok(longName.text.length < 1000, "an unknown property's name is cut short in the answer");
    });

    test("a missing body, or one that is not an object, is answered with what the route needs", async () => {
      const { id } = await createKey({ name: "rotate without body", scopes: [] });
      const none = await send(server, "POST", `/v1/keys/${id}/rotate`);
      assert.equal(none.status, 400);
      assert.equal(none.body.detail, 'body: must be a JSON object with "gracePeriodSeconds"');
      const list = await send(server, "POST", `/v1/keys/${id}/rotate`, { body: "[]" });
      assert.equal(list.body.detail, 'body: must be a JSON object with "gracePeriodSeconds"');
      const created = await send(server, "POST", "/v1/keys", { body: "7" });
      assert.equal(created.body.detail, 'body: must be a JSON object with "name", "scopes"');
      // A route whose fields are all optional but needs one of them does not suggest {}.
      const patch = await send(server, "PATCH", `/v1/keys/${id}`);
      assert.equal(patch.status, 400);
      assert.match(patch.body.detail, /^body: must be a JSON object with at least one of "name", /);
      const empty = await send(server, "PATCH", `/v1/keys/${id}`, { body: "{}" });
      assert.equal(empty.status, 400);
      assert.match(empty.body.detail, /^body: must have at least one of "name", /);
      // The key was not rotated by any of those.
      assert.equal((await send(server, "GET", `/v1/keys/${id}`)).body.status, "active");
      // An empty body sent as JSON is no body: the same answer, and where the body is
      // optional (a reason for revoking) the call goes through.
      const emptyJson = await send(server, "POST", `/v1/keys/${id}/rotate`, { body: "" });
      assert.equal(emptyJson.body.detail, 'body: must be a JSON object with "gracePeriodSeconds"');
      const oddReason = await send(server, "POST", `/v1/keys/${id}/revoke`, { body: json({ reason: "\ud800" }) });
      assert.equal(oddReason.status, 400);
      assert.match(oddReason.body.detail, /reason must be valid Unicode text/);
      const revoked = await send(server, "POST", `/v1/keys/${id}/revoke`, { body: "" });
      assert.equal(revoked.status, 200);
      assert.equal(revoked.body.status, "revoked");
    });

    test("wrong types and out-of-range values are 400 VALIDATION_FAILED with a path", async () => {
      const cases: Array<[string, string, unknown, RegExp]> = [
        ["POST", "/v1/keys", { name: 5, scopes: [] }, /body\/name/],
        ["POST", "/v1/keys", { name: "x", scopes: "a" }, /body\/scopes/],
        ["POST", "/v1/keys", { name: "x" }, /missing property "scopes"/],
        ["POST", "/v1/keys", { name: "x", scopes: [], expiresInSeconds: "3600" }, /expiresInSeconds/],
        ["POST", "/v1/keys", { name: "x", scopes: [], expiresInSeconds: 59 }, /expiresInSeconds/],
        ["POST", "/v1/keys", { name: "x", scopes: [], rateLimit: { limit: 1.5, windowSeconds: 1 } }, /limit/],
        ["POST", "/v1/keys", { name: "x", scopes: ["has space"] }, /scopes\/0/],
        ["POST", "/v1/keys", { name: "x", scopes: [], permissions: ["root"] }, /Unknown permission/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: [1, 2] }, /metadata/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: { ["k".repeat(65)]: 1 } }, /body\/metadata/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: { "": 1 } }, /body\/metadata/],
        ["POST", "/v1/keys", { name: "x", scopes: [], expiresInSeconds: 1e308 }, /from 60 to the maximum/],
        // A lone surrogate cannot be stored as it was sent, so it is refused.
        ["POST", "/v1/keys", { name: "\ud800x", scopes: [] }, /name must be valid Unicode text/],
        ["POST", "/v1/keys", { name: "x", scopes: [], ownerId: "a\udc00" }, /ownerId must be valid Unicode text/],
        ["POST", "/v1/keys", { name: "a\u0000b", scopes: [] }, /name must not contain the character U\+0000/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: { a: "\u0000" } }, /metadata text must be valid/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: { a: ["\ud800"] } }, /metadata text must be valid/],
        ["POST", "/v1/keys", { name: "x", scopes: [], metadata: { "\udc00": 1 } }, /metadata text must be valid/],
        ["POST", "/v1/keys", [], /body/],
        ["POST", "/v1/keys", null, /body/],
        ["POST", "/v1/keys/verify", { key: 123 }, /body\/key/],
        ["POST", "/v1/keys/verify", { key: ["a"] }, /body\/key/],
      ];
      for (const [method, path, body, detail] of cases) {
        const r = await send(server, method, path, { body: json(body) });
        assert.equal(r.status, 400, `${json(body)}: ${r.text}`);
        assert.equal(r.body.code, "VALIDATION_FAILED");
        assert.match(r.body.detail, detail);
      }
      for (const path of [
        "/v1/keys?limit=abc",
        "/v1/keys?limit=0",
        "/v1/keys?limit=101",
        "/v1/keys?limit=1&limit=2",
        "/v1/keys?cursor=%27%20OR%201%3D1",
        "/v1/keys/not-an-id",
        "/v1/audit?since=yesterday",
        // Date.parse would read these as 2000-01-01, 2001-01-01 and local time.
        "/v1/audit?since=0",
        "/v1/audit?until=1",
        "/v1/audit?since=2026-01-31T00:00:00",
        "/v1/audit?since=Jan%201%202026",
        "/v1/audit?outcome=maybe",
      ]) {
        const r = await send(server, "GET", path);
        assert.equal(r.status, 400, path);
        assert.equal(r.body.code, "VALIDATION_FAILED", path);
      }
      // A limit out of range is worded for people, not as the regular expression that checks it.
      for (const path of ["/v1/keys?limit=0", "/v1/audit?limit=1000"]) {
        const r = await send(server, "GET", path);
        assert.equal(r.body.detail, "querystring/limit: must be a whole number from 1 to 100", path);
      }
      // A choice among fixed values names them, once, instead of one "must be equal to
      // constant" per value.
      const { id } = await createKey({ name: "usage interval", scopes: [] });
      const week = await send(server, "GET", `/v1/keys/${id}/usage?interval=week`);
      assert.equal(week.status, 400);
      assert.equal(week.body.detail, 'querystring/interval: must be one of "minute", "hour", "day"');
      assert.deepEqual(week.body.errors, [
        { path: "querystring/interval", message: 'must be one of "minute", "hour", "day"' },
      ]);
      const maybe = await send(server, "GET", "/v1/audit?outcome=maybe");
      assert.equal(maybe.body.detail, 'querystring/outcome: must be one of "success", "failure"');
      const delivery = await send(server, "POST", "/auth/login", {
        key: null,
        body: json({ email: "a@example.com", password: "x", delivery: "carrier pigeon" }),
      });
      assert.equal(delivery.body.detail, 'body/delivery: must be one of "body", "cookie"');
    });

    test("since and until take dates and date-times with their offset", async () => {
      for (const value of [
        "2026-01-31",
        "2026-01-31T00:00:00Z",
        "2026-01-31T00:00:00.123+02:00",
        "2026-01-31t10:20z",
      ]) {
        const r = await send(server, "GET", `/v1/audit?since=${encodeURIComponent(value)}&limit=1`);
        assert.equal(r.status, 200, value);
      }
      // Dates JavaScript parses but that no usage or event can have: a 400, not a 500 (a
      // day before the first date JavaScript knows cannot be printed).
      const { id } = await createKey({ name: "dated", scopes: [] });
      for (const path of [
        `/v1/keys/${id}/usage?until=-271821-04-20T00:00:00Z`,
        `/v1/keys/${id}/usage?interval=day&since=%2B275760-09-13T00:00:00Z`,
        "/v1/audit?since=-000001-01-01T00:00:00Z",
        "/v1/audit?until=%2B010000-01-01T00:00:00Z",
      ]) {
        const r = await send(server, "GET", path);
        assert.equal(r.status, 400, path);
        assert.match(r.body.detail, /must be between 1970-01-01T00:00:00Z and 9999-12-31T23:59:59Z/, path);
      }
      // A day that does not exist is not rolled over into the next month; an offset whose
      // + became a space in the URL gets advice.
      for (const since of ["2026-02-30T00:00:00Z", "2026-02-29", "2026-13-01", "2026-12-07T14:00:00 01:00"]) {
        const r = await send(server, "GET", `/v1/audit?since=${encodeURIComponent(since)}`);
        assert.equal(r.status, 400, since);
        assert.match(r.body.detail, /write a \+ offset as %2B/, since);
      }
      assert.equal((await send(server, "GET", "/v1/audit?since=2024-02-29T00:00:00Z")).status, 200, "a leap day");
      const days = await send(server, "GET", `/v1/keys/${id}/usage?interval=day&since=1970-01-01T00:00:00Z`);
      assert.equal(days.status, 400);
      assert.doesNotMatch(days.body.detail, /longer interval/, "there is none longer than a day");
    });

    test("hostile bodies never cause a 5xx", async () => {
      const { id } = await createKey({ name: "target", scopes: [] });
      const deep = `${"[".repeat(20_000)}${"]".repeat(20_000)}`;
      const bodies = [
        `{"name":"deep","scopes":[],"metadata":{"a":${deep}}}`,
        `{"name":"n","scopes":[],"metadata":{"a":1e400}}`,
        `{"name":"${"\u0000".repeat(10)}","scopes":[]}`,
        `{"name":"\ud800","scopes":[]}`,
        `{"name":"x","scopes":[],"expiresInSeconds":1e308}`,
        `{"name":"x","scopes":[],"expiresInSeconds":-1}`,
        `{"name":"x","scopes":[],"rateLimit":{"limit":99999999999999999999,"windowSeconds":1}}`,
        `{"name":"x","scopes":[],"constructor":{"prototype":{"polluted":true}}}`,
      ];
      for (const body of bodies) {
        const r = await send(server, "POST", "/v1/keys", { body });
        assert.ok(r.status === 400 || r.status === 201, `${body.slice(0, 60)}: ${r.status}`);
        if (r.status === 201) secrets.push(r.body.key);
      }
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
      // A number JSON reads as Infinity would be stored as null: refused.
      const infinite = await send(server, "POST", "/v1/keys", { body: bodies[1] as string });
      assert.equal(infinite.status, 400);
      assert.match(infinite.body.detail, /metadata numbers must be finite/);
      for (const [method, path, body] of [
        ["PATCH", `/v1/keys/${id}`, deep],
        ["POST", `/v1/keys/${id}/rotate`, `{"gracePeriodSeconds":1e300}`],
        ["POST", `/v1/keys/${id}/rotate`, `{"gracePeriodSeconds":99999999999}`],
        ["POST", `/v1/keys/${id}/revoke`, `{"reason":${deep}}`],
        ["POST", `/v1/keys/${id}/revoke`, "[]"],
        ["POST", "/v1/keys/verify", `{"key":"gate_${"\u00ff".repeat(49)}"}`],
        ["POST", "/v1/keys/verify", `{"key":"${"\ud83d\ude00".repeat(100)}"}`],
      ] as const) {
        const r = await send(server, method, path, { body });
        assert.ok(r.status === 400 || r.status === 200, `${method} ${path} ${body.slice(0, 40)}: ${r.status}`);
      }
      for (const path of [
        `/v1/keys/${id}/usage?since=-271821-04-20T00:00:00Z&until=-271821-04-20T01:00:00Z`,
        `/v1/keys/${id}/usage?since=+275760-09-13T00:00:00Z`,
        `/v1/keys/${id}/usage?since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z`,
        "/v1/audit?cursor=9999999999999999",
        "/v1/audit?since=-271821-04-20T00:00:00Z",
        "/v1/keys/%E0%A4%A",
        "/v1/keys/key_%00",
        `/v1/keys/key_${"a".repeat(5000)}`,
      ]) {
        const r = await send(server, "GET", path);
        assert.ok(r.status >= 200 && r.status < 500, `${path}: ${r.status}`);
      }
    });

    test("no credential is 401 with WWW-Authenticate", async () => {
      for (const headers of [{}, { authorization: "Basic YWRtaW46YWRtaW4=" }, { authorization: "Bearer" }]) {
        const r = await send(server, "GET", "/v1/keys", { key: null, headers });
        assert.equal(r.status, 401);
        assert.equal(r.body.code, "UNAUTHENTICATED");
        assert.equal(r.headers.get("www-authenticate"), 'Bearer realm="gatehouse"');
      }
      // A key elsewhere than Authorization is not accepted.
      const other = await send(server, "GET", "/v1/keys", { key: null, headers: { "x-api-key": server.adminKey } });
      assert.equal(other.status, 401);
    });

    test("wrong, malformed, revoked and expired keys get the same 401, byte for byte but the request id", async () => {
      const revoked = await createKey({ name: "revoked admin", scopes: [], permissions: ["keys:read"] });
      assert.equal((await send(server, "POST", `/v1/keys/${revoked.id}/revoke`)).status, 200);
      const expired = await createKey({
        name: "expiring admin",
        scopes: [],
        permissions: ["keys:read"],
        expiresInSeconds: 60,
      });
      assert.equal((await send(server, "GET", "/v1/keys", { key: expired.key })).status, 200);
      clock.advance(61_000);
      const presented = {
        wrong: generateKey("gate"),
        malformed: "not-a-key",
        badChecksum: `${server.adminKey.slice(0, -1)}${server.adminKey.endsWith("0") ? "1" : "0"}`,
        revoked: revoked.key,
        expired: expired.key,
      };
      const answers = new Map<string, Answer>();
      for (const [label, key] of Object.entries(presented)) {
        answers.set(label, await send(server, "GET", "/v1/keys", { key }));
      }
      const normalise = (a: Answer) => ({
        status: a.status,
        body: { ...a.body, requestId: "-" },
        wwwAuthenticate: a.headers.get("www-authenticate"),
        contentType: a.headers.get("content-type"),
        contentLength: a.text.length - String(a.body.requestId).length,
      });
      const reference = normalise(answers.get("wrong") as Answer);
      assert.equal(reference.status, 401);
      // A credential was sent and refused: RFC 6750 §3.1's invalid_token (none sent: no error).
      assert.equal(reference.wwwAuthenticate, 'Bearer realm="gatehouse", error="invalid_token"');
      // Told the key was refused, not asked to send one.
      assert.match(String(reference.body.detail), /^The API key sent was not accepted/);
      for (const [label, answer] of answers) assert.deepEqual(normalise(answer), reference, label);
      const ids = new Set([...answers.values()].map((a) => a.body.requestId));
      assert.equal(ids.size, answers.size, "each answer has its own request id");
      // The audit log keeps what the answer does not say.
      const audit = await send(server, "GET", "/v1/audit?action=auth.api_key&outcome=failure&limit=100");
      const codes = audit.body.data.map((e: { detail: { code: string } }) => e.detail.code);
      for (const code of ["NOT_FOUND", "MALFORMED", "REVOKED", "EXPIRED"]) assert.ok(codes.includes(code), code);
    });

    test("a key without the permission a route needs gets 403 naming it", async () => {
      const verifier = await createKey({ name: "verifier", scopes: [], permissions: ["keys:verify"] });
      const r = await send(server, "GET", "/v1/keys", { key: verifier.key });
      assert.equal(r.status, 403);
      assert.equal(r.body.code, "FORBIDDEN");
      assert.deepEqual(r.body.missingPermissions, ["keys:read"]);
      const audit = await send(server, "GET", "/v1/audit", { key: verifier.key });
      assert.equal(audit.status, 403);
      assert.deepEqual(audit.body.missingPermissions, ["audit:read"]);
      const create = await send(server, "POST", "/v1/keys", {
        key: verifier.key,
        body: json({ name: "x", scopes: [] }),
      });
      assert.equal(create.status, 403);
      // The route it holds works.
      const ok = await send(server, "POST", "/v1/keys/verify", { key: verifier.key, body: json({ key: "x" }) });
      assert.equal(ok.status, 200);
    });

    test("a key cannot create, change, rotate or revoke a key more powerful than itself", async () => {
      const manager = await createKey({ name: "manager", scopes: [], permissions: ["keys:read", "keys:write"] });
      const asManager = (method: string, path: string, body?: unknown) =>
        send(server, method, path, { key: manager.key, ...(body !== undefined ? { body: json(body) } : {}) });
      const escalate = await asManager("POST", "/v1/keys", { name: "x", scopes: [], permissions: ["audit:read"] });
      assert.equal(escalate.status, 403);
      assert.deepEqual(escalate.body.missingPermissions, ["audit:read"]);
      const allowed = await asManager("POST", "/v1/keys", { name: "child", scopes: ["a"], permissions: ["keys:read"] });
      assert.equal(allowed.status, 201);
      secrets.push(allowed.body.key);
      const patchUp = await asManager("PATCH", `/v1/keys/${allowed.body.id}`, { permissions: ["keys:verify"] });
      assert.equal(patchUp.status, 403);
      const admin = (await send(server, "GET", "/v1/keys?limit=100")).body.data.find(
        (k: { name: string }) => k.name === "test admin",
      );
      assert.ok(admin);
      const before = await send(server, "GET", `/v1/keys/${admin.id}`);
      for (const [method, path, body] of [
        ["POST", `/v1/keys/${admin.id}/rotate`, { gracePeriodSeconds: 0 }],
        ["POST", `/v1/keys/${admin.id}/revoke`, { reason: "takeover" }],
        ["PATCH", `/v1/keys/${admin.id}`, { name: "mine now" }],
      ] as const) {
        const r = await asManager(method, path, body);
        assert.equal(r.status, 403, `${method} ${path}`);
        assert.equal(r.body.code, "FORBIDDEN");
      }
      const afterwards = await send(server, "GET", `/v1/keys/${admin.id}`);
      // Its last use moves (these very reads use it); nothing else may.
      assert.deepEqual(
        { ...afterwards.body, lastUsedAt: null },
        { ...before.body, lastUsedAt: null },
        "the admin key is untouched",
      );
      assert.equal(afterwards.body.status, "active");
      // Keys at or below its own power remain its to manage.
      assert.equal((await asManager("POST", `/v1/keys/${allowed.body.id}/revoke`)).status, 200);
    });

    test("a key in the URL is refused with 400 KEY_IN_URL, before authentication", async () => {
      const { key } = await createKey({ name: "in url", scopes: [] });
      const paths = [
        "/v1/keys?api_key=abc",
        "/v1/keys?apikey=abc",
        "/v1/keys?API-KEY=abc",
        `/v1/keys?key=${key}`,
        `/v1/keys/verify?access_token=${key}`,
        "/v1/audit?limit=5&token=abc",
        `/v1/keys/${key}`,
        `/v1/keys/${key}/usage`,
        `/v1/keys/${encodeURIComponent(key).replace("_", "%5F")}`,
        `/healthz?x=${key}`,
        `/nowhere/${key}`,
        // Glued to other characters, or after an escape that does not decode: still a key.
        `/v1/keys/x${key}`,
        `/nowhere/x${key}y`,
        `/v1/keys/%E0%A4%A${key}`,
        `/v1/keys/_${encodeURIComponent(key).replace("_", "%5F")}`,
      ];
      for (const path of paths) {
        for (const credential of [server.adminKey, null]) {
          const r = await send(server, "GET", path, { key: credential });
          assert.equal(r.status, 400, path);
          assert.equal(r.body.code, "KEY_IN_URL", path);
          assert.ok(!r.text.includes(key), "the answer does not echo the key");
        }
      }
      const post = await send(server, "POST", `/v1/keys/verify?key=${key}`, { body: json({ key }) });
      assert.equal(post.body.code, "KEY_IN_URL");
      assert.match(post.body.detail, /Send the key in the Authorization header \(Bearer\), and rotate it/);
      // Each kind of credential is told its own way; a name alone gets the general advice.
      const access = await send(server, "GET", "/auth/me?access_token=abc", { key: null });
      assert.match(access.body.detail, /Send an access token in the Authorization header/);
      const unknown = await send(server, "GET", "/v1/audit?limit=5&token=abc", { key: null });
      assert.match(unknown.body.detail, /refresh tokens in the JSON body/);
      // Names that merely contain "key" are not credentials.
      assert.equal((await send(server, "GET", "/v1/keys?limit=1")).status, 200);
      const audit = await send(server, "GET", "/v1/audit?action=auth.credential_in_url&limit=100");
      assert.ok(audit.body.data.length >= paths.length);
      assert.ok(!audit.text.includes(key));
      assert.ok(audit.text.includes(`${key.slice(0, 9)}…${key.slice(-4)}`), "the audit keeps the hint");
    });

    test("a refresh token in the URL is refused as a key is, and kept out of the logs", async () => {
      const id = "rtk_0123456789abABCDEFGHIJKLMNO";
      const secret = `${"Zy9_-".repeat(8)}abc`;
      const token = `${id}.${secret}`;
      const paths = [
        `/auth/sign-ins/${token}`,
        `/nowhere/x${token}`,
        "/auth/me?refresh_token=abc",
        `/healthz?r=${token}`,
        // Escaped twice, or named in other spellings: still a credential.
        `/nowhere/${id}%252E${secret}`,
        "/auth/me?refreshToken=abc",
        "/auth/me?refresh%5Ftoken=abc",
        "/auth/me?a=1;refresh_token=abc",
      ];
      for (const path of paths) {
        const r = await send(server, "GET", path, { key: null });
        assert.equal(r.status, 400, path);
        assert.equal(r.body.code, "KEY_IN_URL", path);
        assert.match(r.body.detail, /Send a refresh token in the JSON body/, path);
        assert.ok(!r.text.includes(secret), "the answer does not echo the secret");
      }
      assert.ok(!logs.some((line) => line.includes(secret)), "no log line holds the secret");
      const audit = await send(server, "GET", "/v1/audit?action=auth.credential_in_url&limit=100");
      assert.ok(!audit.text.includes(secret));
      assert.ok(audit.text.includes(id), "the audit keeps the token's id, which is not secret");
    });

    test("an access token in the URL is refused under any parameter name, as the SDK refuses it", async () => {
      // The shape is what counts (a JWT's header always starts eyJ); the signature is never checked.
      const jwt = "eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ1c3JfeCJ9.c2lnbmF0dXJlLXNlZ21lbnQ";
      const paths = [
        `/auth/me?t=${jwt}`,
        `/auth/me?next=${encodeURIComponent(`/app?x=${jwt}`)}`,
        `/v1/audit?limit=5&q=${jwt}`,
        `/nowhere/${jwt}`,
        // Behind text that starts like one and is not (reviewer: it hid the token).
        `/v1/keys?ownerId=heyJohnny.${jwt}`,
        `/v1/keys?ownerId=eyJxxxx.${jwt}`,
      ];
      for (const path of paths) {
        for (const credential of [server.adminKey, null]) {
          const r = await send(server, "GET", path, { key: credential });
          assert.equal(r.status, 400, path);
          assert.equal(r.body.code, "KEY_IN_URL", path);
          assert.match(r.body.detail, /Send an access token in the Authorization header/, path);
          assert.ok(!r.text.includes(jwt), "the answer does not echo the token");
        }
      }
      assert.ok(!logs.some((line) => line.includes(jwt.split(".")[1] as string)), "no log line holds the token");
      // Dots and eyJ apart are not a token: ordinary queries pass. Nor is text with "eyJ" and
      // a dot whose first part is no JSON header (reviewer: these owner ids were refused).
      assert.equal((await send(server, "GET", "/v1/audit?action=key.create&limit=1")).status, 200);
      for (const path of [
        "/v1/keys?ownerId=heyJohnny.smith",
        "/v1/keys?ownerId=joeyJordan.dev%40acme.io",
        "/v1/audit?targetId=mikeyJones.x.y",
      ]) {
        assert.equal((await send(server, "GET", path)).status, 200, path);
      }
    });

    test("a path segment longer than any id is a 400 that says so", async () => {
      const r = await send(server, "GET", `/v1/keys/key_${"a".repeat(150)}`);
      assert.equal(r.status, 400);
      assert.equal(r.body.code, "VALIDATION_FAILED");
      assert.match(r.body.detail, /longer than any id/);
    });

    test("what Node's HTTP parser refuses is a problem document too, and the connection closes", async () => {
      const cases = [
        // A 20 KB bearer token: over Node's 16 KiB header limit.
        {
          raw: `GET /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${"a".repeat(20_000)}\r\n\r\n`,
          status: 431,
          code: "HEADERS_TOO_LARGE",
        },
        {
          raw: "GET /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
          status: 400,
          code: "VALIDATION_FAILED",
        },
        { raw: "NOT A REQUEST\r\n\r\n", status: 400, code: "VALIDATION_FAILED" },
      ];
      for (const { raw, status, code } of cases) {
        const answer = await rawExchange(server, raw);
        const [head = "", body = ""] = answer.split("\r\n\r\n");
        assert.match(head, new RegExp(`^HTTP/1.1 ${status} `), code);
        assert.match(head, /content-type: application\/problem\+json/i);
        assert.match(head, /connection: close/i);
        const problem = JSON.parse(body);
        assert.equal(problem.code, code);
        assert.equal(problem.status, status);
        assert.equal(problem.status, ERROR_CODES[code as keyof typeof ERROR_CODES].status);
        assert.ok(!body.includes("aaaa"), "the answer does not echo the header");
      }
      assert.equal((await send(server, "GET", "/healthz")).status, 200, "the server goes on");
    });

    test("two Authorization headers are refused, whichever comes first", async () => {
      const junk = `Bearer ${generateKey("gate")}`;
      const admin = `Bearer ${server.adminKey}`;
      for (const [first, second] of [
        [admin, junk],
        [junk, admin],
        [admin, admin],
      ]) {
        const raw = `GET /v1/keys?limit=1 HTTP/1.1\r\nHost: x\r\nAuthorization: ${first}\r\nAuthorization: ${second}\r\nConnection: close\r\n\r\n`;
        const answer = await rawExchange(server, raw);
        assert.match(answer, /^HTTP\/1.1 400 /);
        assert.match(answer, /Send one Authorization header; this request has 2\./);
      }
    });

    // Node enforces the timeouts (checking every 30 s, too slow to wait for here); what
    // can go wrong on our side is leaving them off, as Fastify's defaults do.
    test("a request's headers and body must arrive within 30 s (no slowloris)", () => {
      const http = server.app.server;
      assert.equal(http.requestTimeout, REQUEST_TIMEOUT_MS);
      assert.equal(REQUEST_TIMEOUT_MS, 30_000);
      assert.ok(http.headersTimeout > 0 && http.headersTimeout <= http.requestTimeout, String(http.headersTimeout));
    });

    test("a caller who may not call a route learns nothing of its schema: 401 comes before validation", async () => {
      for (const [method, path, body] of [
        ["POST", "/v1/keys/undefined/rotate", json({ gracePeriodSeconds: -1 })],
        ["GET", "/v1/keys/not-an-id", undefined],
        ["POST", "/v1/keys", json({ name: 5 })],
        ["POST", "/v1/keys/verify", json({ wrong: true })],
      ] as const) {
        const anonymous = await send(server, method, path, { key: null, ...(body ? { body } : {}) });
        assert.equal(anonymous.status, 401, `${method} ${path}`);
        assert.equal(anonymous.body.code, "UNAUTHENTICATED");
        assert.ok(!anonymous.text.includes("must"), "no schema message");
        const admin = await send(server, method, path, body ? { body } : {});
        assert.equal(admin.status, 400, `${method} ${path} as admin`);
        assert.equal(admin.body.code, "VALIDATION_FAILED");
      }
    });

    test("/auth/password asks for a sign-in before it judges the body", async () => {
      const r = await send(server, "POST", "/auth/password", { key: null, body: json({ currentPassword: 5 }) });
      assert.equal(r.status, 401);
      assert.ok(!r.text.includes("must"), "no schema message");
    });

    test("U+0000 anywhere in the URL is a 400 on both backends (PostgreSQL refuses it in a query)", async () => {
      for (const path of [
        "/v1/keys?ownerId=%00",
        "/v1/audit?action=a%00b",
        "/v1/audit?actor=%00",
        "/v1/audit?targetId=x%00",
        "/v1/keys/key_a%00b",
      ]) {
        const r = await send(server, "GET", path);
        assert.equal(r.status, 400, path);
        assert.match(r.body.detail, /must not contain U\+0000/, path);
      }
    });

    test("DELETE of a key says that keys are revoked, not deleted", async () => {
      const r = await send(server, "DELETE", "/v1/keys/key_abc");
      assert.equal(r.status, 404);
      assert.match(r.body.detail, /Keys are revoked, not deleted: POST \/v1\/keys\/\{id\}\/revoke/);
    });

    test("an unknown route is a 404 problem", async () => {
      for (const [method, path] of [
        ["GET", "/"],
        ["GET", "/v2/keys"],
        ["DELETE", "/v1/keys"],
        ["PUT", "/v1/keys/key_abc"],
        ["GET", "/v1/keys/key_abc/nothing"],
      ] as const) {
        const r = await send(server, method, path);
        assert.equal(r.status, 404, `${method} ${path}`);
        assert.equal(r.body.code, "NOT_FOUND");
      }
    });

    test("the logs never contain a key", async () => {
      const { key } = await createKey({ name: "logged", scopes: ["a"] });
      assert.equal(
        (await send(server, "POST", "/v1/keys/verify", { body: json({ key, scopes: ["a"] }) })).body.valid,
        true,
      );
      await send(server, "POST", "/v1/keys/verify", { body: `{"key":"${key}",` });
      await send(server, "POST", "/v1/keys/verify", { body: `{"key":"${key}","x":1}` });
      await send(server, "GET", `/v1/keys?api_key=${key}`);
      await send(server, "GET", `/v1/keys/${key}`);
      await send(server, "GET", `/v1/keys/${encodeURIComponent(key).replace("_", "%5F")}`);
      await send(server, "GET", `/nope/x${key}`);
      await send(server, "GET", `/v1/keys/%E0%A4%A${key}`);
      await send(server, "GET", "/v1/keys", { key });
      await send(server, "GET", "/v1/keys", { key: null, headers: { authorization: `Basic ${key}` } });
      await send(server, "GET", "/v1/keys", { key: null, headers: { "x-api-key": key, cookie: `k=${key}` } });
      const output = logs.join("");
      assert.ok(output.includes('"msg":"incoming request"'), "the log captured requests");
      assert.ok(output.includes("/v1/keys/verify"));
      for (const secret of secrets) {
        assert.ok(!output.includes(secret), `the log holds a key: ${secret.slice(0, 9)}`);
        // Not even its random part, in any encoding.
        assert.ok(!output.includes(secret.slice(9, 40)));
      }
    });
  });

  describe(`failed-authentication guard (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startServer(backend);
    });
    after(() => server.close());

    test("after 30 different keys failed from one address, it answers 429 with Retry-After", async () => {
      for (let i = 0; i < 30; i++) {
        const r = await send(server, "GET", "/v1/keys", { key: generateKey("gate") });
        assert.equal(r.status, 401, `attempt ${i + 1}`);
      }
      for (const key of [generateKey("gate"), server.adminKey]) {
        const blocked = await send(server, "GET", "/v1/keys", { key });
        assert.equal(blocked.status, 429);
        assert.equal(blocked.body.code, "RATE_LIMITED");
        // Said as what it is: the address, not the key's own limit.
        assert.match(blocked.body.detail, /^Too many failed authentications from this address: .*; retry in \d+ s\.$/);
        assert.equal(blocked.body.limitedBy, "address");
        const retryAfter = Number(blocked.headers.get("retry-after"));
        assert.ok(Number.isInteger(retryAfter) && retryAfter > 0 && retryAfter <= 300, String(retryAfter));
      }
      const verify = await send(server, "POST", "/v1/keys/verify", { body: json({ key: "x" }) });
      assert.equal(verify.status, 429);
      // Health checks need no credential and are not blocked.
      assert.equal((await send(server, "GET", "/healthz", { key: null })).status, 200);
    });

    test("one wrong key retried, malformed keys and missing ones are refused every time but never block the address", async () => {
      const own = await startServer(backend);
      try {
        // A service deployed with a key that was revoked, one that never existed, one
        // mistyped, and one with no key configured at all; each retries.
        const revoked = await send(own, "POST", "/v1/keys", { body: json({ name: "old", scopes: [] }) });
        assert.equal((await send(own, "POST", `/v1/keys/${revoked.body.id}/revoke`, { body: json({}) })).status, 200);
        const unknown = generateKey("gate");
        for (let i = 0; i < 40; i++) {
          for (const key of [revoked.body.key, unknown, `${unknown.slice(0, -1)}x`, "nope", null]) {
            const answer = await send(own, "GET", "/v1/keys", { key });
            assert.equal(answer.status, 401, `round ${i + 1}, ${key === null ? "no key" : key.slice(0, 9)}`);
          }
        }
        // Each bad key is in the audit log once for the minute, not once per retry.
        await own.gatehouse.audit.flush();
        const events = await send(own, "GET", `/v1/audit?action=auth.api_key&targetId=${revoked.body.id}&limit=100`);
        assert.equal(events.body.data.length, 1);
        assert.equal(events.body.data[0].detail.code, "REVOKED");
        // A service beside them whose key this node has never let in is not shut out.
        const fresh = await send(own, "POST", "/v1/keys", {
          body: json({ name: "beside", scopes: [], permissions: ["keys:read"] }),
        });
        assert.equal((await send(own, "GET", "/v1/keys?limit=1", { key: fresh.body.key })).status, 200);
        // Guessing is still braked: the revoked key and the unknown one counted once each, so
        // 28 more different keys reach the limit.
        for (let i = 0; i < 27; i++)
          assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 401, `guess ${i}`);
        assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 401, "the 30th");
        assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 429);
      } finally {
        await own.close();
      }
    });

    test("a key already let in passes a blocked address; keys it has not seen are refused there", async () => {
      const own = await startServer(backend);
      try {
        const fresh = await send(own, "POST", "/v1/keys", {
          body: json({ name: "unused", scopes: [], permissions: ["keys:read"] }),
        });
        assert.equal(fresh.status, 201);
        // The admin key has been let in (just now); the new key never has.
        for (let i = 0; i < 30; i++)
          assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 401);
        assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 429);
        assert.equal((await send(own, "GET", "/v1/keys", { key: fresh.body.key })).status, 429);
        assert.equal((await send(own, "GET", "/v1/keys?limit=1")).status, 200, "the admin key behind the same address");
        // Past the caller cache's second, the key is looked up again, and still let in.
        await new Promise((resolve) => setTimeout(resolve, 1100));
        assert.equal((await send(own, "GET", "/v1/keys?limit=1")).status, 200, "after the cache forgot it");
        assert.equal((await send(own, "GET", "/v1/keys", { key: generateKey("gate") })).status, 429);
      } finally {
        await own.close();
      }
    });
  });
}
