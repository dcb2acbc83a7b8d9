/**
 * `node sdk/bench/verifier-variants.ts`: how much server CPU a guarded route costs per
 * request with each way of verifying an RS256 access token, all in one Fastify process
 * (so the machine's load hits them alike), every request a full verification (one token,
 * no cache): `/open` (no guard), `/sdk` (the SDK's requireToken: node:crypto), `/jose`
 * (jose's jwtVerify, WebCrypto), `/fast-jwt` (fast-jwt's verifier). Each guard checks the
 * same pins (alg, issuer, audience, typ) and the scope. Rounds interleave the routes;
 * figures are the median round. Tokens and the JWKS come from a real Gatehouse in this
 * process; the API runs on core 0 and autocannon on core 1 when `taskset` exists.
 * Overrides: BENCH_ROUNDS (default 6), BENCH_DURATION (s per measurement, default 3).
 * Writes bench/results/verifier-variants.md.
 *
 * The API itself is this file started with BENCH_VARIANTS_API set.
 */
import { spawn } from "node:child_process";
import { createPublicKey, type JsonWebKeyInput } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";

const ROUTES = ["open", "sdk", "jose", "fast-jwt"] as const;

if (process.env.BENCH_VARIANTS_API) {
  const settings = JSON.parse(process.env.BENCH_VARIANTS_API) as { issuer: string; audience: string; jwksUri: string };
  const { default: Fastify } = await import("fastify");
  const { jwtVerify } = await import("jose");
  const { createVerifier } = await import("fast-jwt");
  const { gatehousePlugin, requireToken } = await import("../src/fastify.ts");
  const { createTokenVerifier } = await import("../src/index.ts");
  const jwks = (await (await fetch(settings.jwksUri)).json()) as {
    keys: Array<JsonWebKeyInput["key"] & { kid: string }>;
  };
  const keys = new Map(jwks.keys.map((jwk) => [jwk.kid, createPublicKey({ key: jwk, format: "jwk" })]));
  const fastVerifiers = new Map(
    [...keys].map(([kid, key]) => [
      kid,
      createVerifier({
        key: key.export({ type: "spki", format: "pem" }).toString(),
        algorithms: ["RS256"],
        allowedIss: settings.issuer,
        allowedAud: settings.audience,
        checkTyp: "at+jwt",
        requiredClaims: ["iss", "aud", "exp", "iat", "sub", "jti"],
      }),
    ]),
  );
  const kidOf = (token: string): string =>
    JSON.parse(Buffer.from(token.slice(0, token.indexOf(".")), "base64url").toString()).kid;
  const bearer = (header: string | undefined) => /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i.exec(header ?? "")?.[1] ?? "";
  const hasScope = (payload: Record<string, unknown>) =>
    typeof payload.scope === "string" && payload.scope.split(" ").includes("payments:read");

  const app = Fastify({ logger: false });
  await app.register(gatehousePlugin, {
    tokenVerifier: createTokenVerifier({ ...settings, cache: { maxEntries: 0 } }),
  });
  const answer = { items: [] };
  app.get("/open", async () => answer);
  app.get("/sdk", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async () => answer);
  app.get("/jose", async (request, reply) => {
    const token = bearer(request.headers.authorization);
    const key = keys.get(kidOf(token));
    if (!key) return reply.code(401).send({});
    const { payload } = await jwtVerify(token, key, {
      algorithms: ["RS256"],
      issuer: settings.issuer,
      audience: settings.audience,
      typ: "at+jwt",
      requiredClaims: ["exp", "iat", "sub", "jti"],
    });
    return hasScope(payload) ? answer : reply.code(403).send({});
  });
  app.get("/fast-jwt", async (request, reply) => {
    const token = bearer(request.headers.authorization);
    const verify = fastVerifiers.get(kidOf(token));
    if (!verify) return reply.code(401).send({});
    return hasScope(verify(token)) ? answer : reply.code(403).send({});
  });
  const address = await app.listen({ port: 0, host: "127.0.0.1" });
  process.stdout.write(`${address}\n`);
  process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
} else {
  const { default: autocannon } = await import("autocannon");
  const { startTokenGatehouse } = await import("../test/support/tokens.ts");
  const rounds = Number(process.env.BENCH_ROUNDS ?? 6);
  const duration = Number(process.env.BENCH_DURATION ?? 3);
  const gatehouse = await startTokenGatehouse();
  const { accessToken } = await gatehouse.signIn({ scopes: ["payments:read"] });
  const hasTaskset = spawn("taskset", ["--version"]).once("error", () => {});
  const pinned = await new Promise<boolean>((resolve) => hasTaskset.once("exit", (code) => resolve(code === 0)));
  const command = [process.execPath, fileURLToPath(import.meta.url)];
  const [file, ...args] = pinned ? ["taskset", "-c", "0", ...command] : command;
  const api = spawn(file as string, args, {
    env: {
      ...process.env,
      BENCH_VARIANTS_API: JSON.stringify({
        issuer: gatehouse.issuer,
        audience: gatehouse.audience,
        jwksUri: gatehouse.jwksUri,
      }),
    },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise<string>((resolve) =>
    api.stdout?.once("data", (chunk: Buffer) => resolve(String(chunk).split("\n")[0] ?? "")),
  );
  const cpuSeconds = () => {
    const stat = readFileSync(`/proc/${api.pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  };
  const load = (path: string, seconds: number) =>
    autocannon({
      url,
      connections: 50,
      duration: seconds,
      requests: [{ method: "GET", path, headers: { authorization: `Bearer ${accessToken}` } }],
    });
  const samples = new Map<string, number[]>(ROUTES.map((route) => [route, []]));
  for (const route of ROUTES) await load(`/${route}`, 1);
  for (let round = 0; round < rounds; round++) {
    for (const route of ROUTES) {
      const before = cpuSeconds();
      const result = await load(`/${route}`, duration);
      if (result.non2xx > 0 || result.errors > 0) throw new Error(`/${route}: ${result.non2xx} non-2xx`);
      samples.get(route)?.push(((cpuSeconds() - before) * 1e6) / result.requests.total);
    }
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] ?? Number.NaN;
  const open = median(samples.get("open") ?? []);
  const lines = [
    "# A guarded route's server CPU, by verification method",
    "",
    `- ${new Date().toISOString()}; Node ${process.version}; \`node sdk/bench/verifier-variants.ts\`: RS256, one token, no cache (every request a full check), ${rounds} interleaved rounds of ${duration} s, 50 connections; load average ${loadavg()[0]?.toFixed(1)} at the end`,
    "",
    "| route | server CPU µs/request (median) | ratio to /open | rounds |",
    "| --- | ---: | ---: | --- |",
  ];
  for (const route of ROUTES) {
    const values = samples.get(route) ?? [];
    lines.push(
      `| /${route} | ${median(values).toFixed(0)} | ${(open / median(values)).toFixed(2)}x | ${values.map((v) => v.toFixed(0)).join(" ")} |`,
    );
  }
  const text = `${lines.join("\n")}\n`;
  process.stdout.write(text);
  writeFileSync(fileURLToPath(new URL("../../bench/results/verifier-variants.md", import.meta.url)), text);
  api.kill("SIGTERM");
  await new Promise((resolve) => api.once("exit", resolve));
  await gatehouse.close();
}
