import assert from "node:assert/strict";
import { createServer, type OutgoingHttpHeaders } from "node:http";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { createKeyVerifier, guard } from "../src/index.ts";
import { close, listen } from "./support/gatehouse.ts";

/** A day: the most the guard passes on (documented in sdk/README.md). */
const MAX = "86400";

describe("Retry-After and RateLimit t= stay whole seconds, at most a day", () => {
  // What the stand-in for Gatehouse (or a proxy before it) answers next.
  let answer: { status: number; headers: OutgoingHttpHeaders; body: unknown } = { status: 500, headers: {}, body: {} };
  const upstream = createServer((_req, res) => {
    res.writeHead(answer.status, { "content-type": "application/json", ...answer.headers });
    res.end(JSON.stringify(answer.body));
  });
  let baseUrl: string;
  before(async () => {
    baseUrl = await listen(upstream);
  });
  after(() => close(upstream));

  async function guarded() {
    const verifier = createKeyVerifier({ baseUrl, serviceKey: "svc" });
    return guard({ headers: { authorization: `Bearer ${generateKey("gate")}` } }, { verifier });
  }

  test("a 429 with an absurd Retry-After: 503 with Retry-After 86400", async () => {
    for (const retryAfter of ["99999999999999999999999", "9".repeat(400), "Fri, 31 Dec 9999 23:59:59 GMT"]) {
      answer = { status: 429, headers: { "retry-after": retryAfter }, body: {} };
      const result = await guarded();
      assert.equal(result.ok, false);
      if (result.ok) return;
      assert.equal(result.status, 503);
      assert.equal(result.headers["retry-after"], MAX, retryAfter);
    }
    // A sane one is passed on as it is.
    answer = { status: 429, headers: { "retry-after": "42" }, body: {} };
    const sane = await guarded();
    assert.equal(!sane.ok && sane.headers["retry-after"], "42");
  });

  test("a RATE_LIMITED answer with a reset far in the future: 429 with Retry-After and t= of 86400", async () => {
    answer = {
      status: 200,
      headers: {},
      body: {
        valid: false,
        code: "RATE_LIMITED",
        ratelimit: { limit: 1, remaining: 0, reset: Number.MAX_SAFE_INTEGER },
      },
    };
    const result = await guarded();
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.status, 429);
    assert.equal(result.headers["retry-after"], MAX);
    assert.equal(result.headers.ratelimit, `"key";r=0;t=${MAX}`);
    assert.match(result.body.detail, new RegExp(`retry in ${MAX} s`));
  });
});
