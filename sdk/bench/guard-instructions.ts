/**
 * `node sdk/bench/guard-instructions.ts`: instructions per first-seen access token through
 * the SDK's guard (`guardTokenNow`, then `guardToken` when it says null: what
 * `requireToken` does), in process, for HS256 and RS256. Every token is new to the
 * verifier (its cache is off), as in the `auth` part's first-seen case, but without HTTP,
 * so the count is the SDK's own work. Each case runs twice under `valgrind
 * --tool=callgrind`, with 0 and with BENCH_OPS checks after the same set-up and warm-up;
 * the difference divided by BENCH_OPS is the figure. Unlike CPU time it does not move with
 * what else the machine does, so two versions compare on a noisy machine:
 * BENCH_SDK_DIR=<another checkout> measures that checkout's `sdk/src`.
 *
 * The tokens are made once, by this process, and read by both runs; the RS256 JWKS is
 * served from memory through the verifier's `fetch` option. ~5 minutes.
 */
import { spawnSync } from "node:child_process";
import { createHmac, generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { hs256KeyId } from "../src/token-signature.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const TOKENS = 4000;
const WARMUP = 3000;
const ISSUER = "http://127.0.0.1:8080";
const RSA_KID = "k".repeat(43);

interface Fixture {
  secret: string;
  jwk: Record<string, unknown>;
  tokens: Record<"HS256" | "RS256", string[]>;
}

/** The tokens of both cases, made once by the parent: the children only read them, so their set-up is the same work. */
function makeFixture(): Fixture {
  const secret = Buffer.alloc(32, 7);
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const iat = Math.floor(Date.now() / 1000);
  const tokens = { HS256: [] as string[], RS256: [] as string[] };
  for (const alg of ["HS256", "RS256"] as const) {
    const kid = alg === "HS256" ? hs256KeyId(secret) : RSA_KID;
    const header = Buffer.from(JSON.stringify({ alg, typ: "at+jwt", kid })).toString("base64url");
    for (let i = 0; i < TOKENS; i++) {
      const id = String(i).padStart(36, "0");
      const claims = { iss: ISSUER, sub: `usr_${id}`, aud: ISSUER, iat, exp: iat + 900, jti: id, sid: `fam_${id}` };
      const input = `${header}.${Buffer.from(JSON.stringify({ ...claims, scope: "payments:read", client_id: "app" })).toString("base64url")}`;
      const signature =
        alg === "HS256"
          ? createHmac("sha256", secret).update(input).digest()
          : sign("sha256", Buffer.from(input), privateKey);
      tokens[alg].push(`${input}.${signature.toString("base64url")}`);
    }
  }
  const jwk = { ...publicKey.export({ format: "jwk" }), kid: RSA_KID, alg: "RS256", use: "sig" };
  return { secret: secret.toString("base64url"), jwk, tokens };
}

async function child(alg: "HS256" | "RS256", ops: number, fixture: Fixture): Promise<void> {
  const sdk = resolve(process.env.BENCH_SDK_DIR ?? ROOT, "sdk/src");
  const { createTokenVerifier } = await import(join(sdk, "index.ts"));
  const { guardToken, guardTokenNow } = await import(join(sdk, "token-guard.ts"));
  const tokens = fixture.tokens[alg];
  const fetchJwks = (async () =>
    new Response(JSON.stringify({ keys: [fixture.jwk] }), { status: 200 })) as typeof fetch;
  const verifier = createTokenVerifier({
    issuer: ISSUER,
    audience: ISSUER,
    cache: { maxEntries: 0 },
    ...(alg === "HS256" ? { hs256Secret: fixture.secret } : { fetch: fetchJwks }),
  });
  // Frozen, as `requireToken` keeps its route's scopes (older checkouts ignore that).
  const options = { verifier, scopes: Object.freeze(["payments:read"]) };
  const check = async (count: number, from: number) => {
    for (let i = 0; i < count; i++) {
      const request = { url: "/guarded", headers: { authorization: `Bearer ${tokens[(from + i) % TOKENS]}` } };
      const result = guardTokenNow(request, options) ?? (await guardToken(request, options));
      if (!result.ok) throw new Error(`token refused: ${JSON.stringify(result.body)}`);
    }
  };
  await check(WARMUP, 0);
  await check(ops, WARMUP);
}

function instructions(alg: string, ops: number): number {
  const run = spawnSync(
    "valgrind",
    ["--tool=callgrind", "--callgrind-out-file=/dev/null", process.execPath, fileURLToPath(import.meta.url)],
    { env: { ...process.env, BENCH_CHILD: `${alg}:${ops}`, BENCH_FIXTURE: fixtureFile }, encoding: "utf8" },
  );
  const collected = /Collected : (\d+)/.exec(run.stderr)?.[1];
  if (run.status !== 0 || collected === undefined) throw new Error(`callgrind failed: ${run.stderr.slice(-2000)}`);
  return Number(collected);
}

let fixtureFile = "";
if (process.env.BENCH_CHILD) {
  const [alg, ops] = process.env.BENCH_CHILD.split(":");
  const fixture = JSON.parse(readFileSync(process.env.BENCH_FIXTURE ?? "", "utf8")) as Fixture;
  await child(alg === "RS256" ? "RS256" : "HS256", Number(ops), fixture);
} else {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-guard-instructions-"));
  fixtureFile = join(dir, "fixture.json");
  writeFileSync(fixtureFile, JSON.stringify(makeFixture()));
  const ops = Number(process.env.BENCH_OPS ?? 3000);
  console.log(`SDK: ${process.env.BENCH_SDK_DIR ?? ROOT}; ${ops} first-seen tokens per case, after ${WARMUP}`);
  for (const alg of ["HS256", "RS256"]) {
    const perCheck = (instructions(alg, ops) - instructions(alg, 0)) / ops;
    console.log(`${alg}: ${Math.round(perCheck / 1000)}k instructions per first-seen token`);
  }
  rmSync(dir, { recursive: true, force: true });
}
