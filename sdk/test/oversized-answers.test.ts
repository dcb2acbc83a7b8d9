import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { createKeyVerifier, guard, guardToken, VerifierError } from "../src/index.ts";
import { close, listen } from "./support/gatehouse.ts";
import { startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

/** Far more than any cap, so a reader that stops early is told apart from one that read it all. */
const PADDING_BYTES = 64 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, " ");

/**
 * A hostile endpoint: a 200 whose body is a perfectly good answer padded with 64 MiB of
 * JSON whitespace, streamed with back-pressure. `sentAll` tells whether the client read
 * the whole of it; a bounded reader hangs up long before.
 */
function paddedAnswers(answer: (req: IncomingMessage) => Promise<string> | string) {
  const state = { requests: 0, sentAll: false, hungUp: false };
  const server = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    state.requests++;
    const text = await answer(req);
    res.writeHead(200, { "content-type": "application/json" });
    res.write(text.slice(0, 1));
    let sent = 0;
    res.on("close", () => {
      if (!res.writableFinished) state.hungUp = true;
    });
    const pump = (): void => {
      while (sent < PADDING_BYTES) {
        if (res.destroyed) return;
        sent += CHUNK.length;
        if (!res.write(CHUNK)) {
          res.once("drain", pump);
          return;
        }
      }
      res.end(text.slice(1), () => {
        state.sentAll = true;
      });
    };
    pump();
  });
  return { server, state };
}

describe("answers past the size cap are no verdict (503), and are not read whole", () => {
  let gh: TokenGatehouse;
  const hostile: Server[] = [];
  before(async () => {
    gh = await startTokenGatehouse();
  });
  after(async () => {
    for (const server of hostile) await close(server);
    await gh.close();
  });

  test("a verify answer over 64 KiB: guard() answers 503 INVALID_RESPONSE", async () => {
    const key = generateKey("gate");
    const { server, state } = paddedAnswers(() =>
      JSON.stringify({
        valid: true,
        keyId: "key_1",
        ownerId: null,
        scopes: ["payments:read"],
        expiresAt: null,
        ratelimit: { limit: 10, remaining: 9, reset: Date.now() + 60_000 },
      }),
    );
    hostile.push(server);
    // A long timeout: what stops the read must be the cap, not the clock.
    const verifier = createKeyVerifier({ baseUrl: await listen(server), serviceKey: "svc", timeoutMs: 60_000 });
    const result = await guard({ headers: { authorization: `Bearer ${key}` } }, { verifier, scopes: [] });
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.status, 503);
    assert.equal(result.body.code, "VERIFIER_UNAVAILABLE");
    assert.equal(result.cause?.code, "INVALID_RESPONSE");
    assert.equal(state.sentAll, false, "the SDK stopped reading past the cap");
    await waitFor(() => state.hungUp);
  });

  test("a JWKS over 1 MiB: guardToken answers 503, the token is not verified with it", async () => {
    const { server, state } = paddedAnswers(async () => (await fetch(gh.jwksUri)).text());
    hostile.push(server);
    const verifier = gh.verifier({
      jwksUri: `${await listen(server)}/.well-known/jwks.json`,
      jwks: { timeoutMs: 60_000 },
    });
    const { accessToken } = await gh.signIn();
    const result = await guardToken({ headers: { authorization: `Bearer ${accessToken}` } }, { verifier });
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.status, 503);
    assert.ok(result.cause instanceof VerifierError);
    assert.equal(result.cause.code, "INVALID_RESPONSE");
    assert.equal(state.sentAll, false, "the SDK stopped reading past the cap");
    await waitFor(() => state.hungUp);
  });

  test("a revocation answer over 64 KiB: 503, never a pass", async () => {
    const { server, state } = paddedAnswers(() => JSON.stringify({ id: "u1" }));
    hostile.push(server);
    const verifier = gh.verifier({ revocationCheck: { baseUrl: await listen(server), timeoutMs: 60_000 } });
    const { accessToken } = await gh.signIn();
    const result = await guardToken({ headers: { authorization: `Bearer ${accessToken}` } }, { verifier });
    assert.equal(result.ok, false);
    if (result.ok) return;
    assert.equal(result.status, 503);
    assert.equal(result.cause?.code, "INVALID_RESPONSE");
    assert.equal(state.requests, 1);
    assert.equal(state.sentAll, false, "the SDK stopped reading past the cap");
    await waitFor(() => state.hungUp);
  });
});

/** Polls until the server saw the connection end (it learns of the hang-up a moment after the client). */
async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 10));
}
