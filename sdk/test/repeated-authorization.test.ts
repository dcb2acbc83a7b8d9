import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { connect } from "node:net";
import { after, before, describe, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { gatehousePlugin, requireKey, requireToken } from "../src/fastify.ts";
import { createKeyVerifier, guard, guardToken, type KeyVerifier, type TokenVerifier } from "../src/index.ts";
import { close, listen, startGatehouse, type TestGatehouse } from "./support/gatehouse.ts";
import { startTokenGatehouse, type TokenGatehouse } from "./support/tokens.ts";

/**
 * Sends one GET with the header lines exactly as given, over a raw socket: fetch and
 * node's client would merge or refuse a repeated Authorization before it left.
 */
function rawGet(url: string, lines: string[]): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let answer = "";
    socket.setEncoding("latin1");
    socket.on("data", (chunk) => {
      answer += chunk;
    });
    socket.on("error", reject);
    socket.on("end", () => {
      const [head = "", body = ""] = answer.split("\r\n\r\n");
      resolve({ status: Number(head.split(" ")[1]), body });
    });
    socket.write(
      `GET /payments HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${lines.map((l) => `${l}\r\n`).join("")}\r\n`,
    );
  });
}

/** Both orders: whichever of the two a proxy in front would judge, the SDK must not pick one. */
function repeats(valid: string): string[][] {
  return [
    [`Authorization: Bearer ${valid}`, "Authorization: Bearer junk"],
    ["Authorization: Bearer junk", `authorization: Bearer ${valid}`],
    [`Authorization: Bearer ${valid}`, `Authorization: Bearer ${valid}`],
  ];
}

function nodeApi(check: (req: Parameters<typeof guard>[0]) => ReturnType<typeof guard | typeof guardToken>): Server {
  return createServer(async (req, res) => {
    const result = await check(req);
    if (!result.ok) return res.writeHead(result.status, result.headers).end(JSON.stringify(result.body));
    res.writeHead(200).end("{}");
  });
}

async function fastifyApi(options: { verifier?: KeyVerifier; tokenVerifier?: TokenVerifier }) {
  const app = Fastify({ logger: false });
  await app.register(gatehousePlugin, options);
  app.get("/payments", { preHandler: options.verifier ? requireKey() : requireToken() }, async () => ({}));
  return { app, url: await app.listen({ port: 0, host: "127.0.0.1" }) };
}

async function assertRefusesRepeats(url: string, valid: string): Promise<void> {
  const once = await rawGet(url, [`Authorization: Bearer ${valid}`]);
  assert.equal(once.status, 200, "one header with the credential passes");
  for (const lines of repeats(valid)) {
    const r = await rawGet(url, lines);
    assert.equal(r.status, 400, lines.join(" | "));
    assert.match(r.body, /"code":"AMBIGUOUS_CREDENTIALS"/);
  }
}

describe("a repeated Authorization header is refused (400 AMBIGUOUS_CREDENTIALS)", () => {
  let keys: TestGatehouse;
  let tokens: TokenGatehouse;
  let key: string;
  let accessToken: string;
  const servers: Server[] = [];
  const apps: FastifyInstance[] = [];
  before(async () => {
    [keys, tokens] = await Promise.all([startGatehouse(), startTokenGatehouse()]);
    key = (await keys.createKey()).key;
    accessToken = (await tokens.signIn()).accessToken;
  });
  after(async () => {
    for (const server of servers) await close(server);
    for (const app of apps) await app.close();
    await Promise.all([keys.close(), tokens.close()]);
  });

  const keyVerifier = () => createKeyVerifier({ baseUrl: keys.url, serviceKey: keys.serviceKey });

  test("guard() on node:http", async () => {
    const verifier = keyVerifier();
    const server = nodeApi((req) => guard(req, { verifier }));
    servers.push(server);
    await assertRefusesRepeats(await listen(server), key);
  });

  test("guardToken() on node:http", async () => {
    const verifier = tokens.verifier();
    const server = nodeApi((req) => guardToken(req, { verifier }));
    servers.push(server);
    await assertRefusesRepeats(await listen(server), accessToken);
  });

  test("requireKey() on Fastify", async () => {
    const api = await fastifyApi({ verifier: keyVerifier() });
    apps.push(api.app);
    await assertRefusesRepeats(api.url, key);
  });

  test("requireToken() on Fastify, also for a token it has already verified", async () => {
    const api = await fastifyApi({ tokenVerifier: tokens.verifier() });
    apps.push(api.app);
    await assertRefusesRepeats(api.url, accessToken);
  });

  test("a Fetch Request, where repeats arrive joined with a comma", async () => {
    const verifier = keyVerifier();
    const joined = new Request("http://api.example/payments", {
      headers: [
        ["authorization", `Bearer ${key}`],
        ["authorization", "Bearer junk"],
      ],
    });
    const result = await guard(joined, { verifier });
    assert.equal(!result.ok && result.body.code, "AMBIGUOUS_CREDENTIALS");
    const tokenResult = await guardToken(joined, { verifier: tokens.verifier() });
    assert.equal(!tokenResult.ok && tokenResult.body.code, "AMBIGUOUS_CREDENTIALS");
  });
});
