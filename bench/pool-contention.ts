/**
 * What sign-ins do to token work, in process: 16 sign-ins' worth of argon2id hashes
 * (the server's parameters) queued through `PasswordHasher`, with every thread of libuv's
 * pool allowed to hash (4, as before) or one left free (3, the server's default now), and
 * meanwhile one token operation every 20 ms, timed: an RS256 verification through jose
 * (WebCrypto, a pool job), with node:crypto (synchronous, as Gatehouse verifies now), and
 * an RS256 signature through jose (as Gatehouse signs). Prints p50/p99 latency and writes
 * bench/results/pool-contention.md.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { loadavg } from "node:os";
import { jwtVerify, SignJWT } from "jose";
import { loadConfig } from "../src/config/config.ts";
import { parseCompactJws, verifyCompactJws } from "../src/tokens/compact-jws.ts";
import { PasswordHasher, threadPoolSize } from "../src/users/password-hasher.ts";

const SAMPLES = 100;
const ISSUER = "https://gatehouse.example";
const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
const now = Math.floor(Date.now() / 1000);
const claims = { iss: ISSUER, aud: ISSUER, sub: "usr_1", iat: now, exp: now + 900, jti: "j", client_id: "c" };
const header = { alg: "RS256", typ: "at+jwt", kid: "k".repeat(43) };
const token = await new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
const pins = { issuer: ISSUER, audience: ISSUER, typ: "at+jwt", requiredClaims: ["iss", "aud", "exp"] };

const operations: Record<string, () => Promise<unknown> | unknown> = {
  "RS256 verify, jose (WebCrypto, pool job)": () =>
    jwtVerify(token, publicKey, { algorithms: ["RS256"], issuer: ISSUER, audience: ISSUER, typ: "at+jwt" }),
  "RS256 verify, node:crypto (synchronous, as Gatehouse verifies now)": () =>
    verifyCompactJws(parseCompactJws(token), publicKey, "RS256", pins),
  "RS256 sign, jose (WebCrypto, pool job)": () => new SignJWT(claims).setProtectedHeader(header).sign(privateKey),
};

const pool = threadPoolSize();
const parameters = loadConfig().auth.password.argon2;
const percentile = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];

const rows: string[] = [];
for (const maxConcurrent of [pool, Math.max(1, pool - 1)]) {
  for (const [name, operation] of Object.entries(operations)) {
    const hasher = new PasswordHasher(parameters, { maxConcurrent });
    const stored = await hasher.hash("correct horse battery staple 42");
    let stop = false;
    const signIns = Array.from({ length: 16 }, async () => {
      while (!stop) await hasher.verify(stored, "correct horse battery staple 42");
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const latencies: number[] = [];
    for (let i = 0; i < SAMPLES; i++) {
      const started = performance.now();
      await operation();
      latencies.push(performance.now() - started);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    stop = true;
    await Promise.all(signIns);
    latencies.sort((a, b) => a - b);
    const row = `| ${maxConcurrent} of ${pool} | ${name} | ${percentile(latencies, 0.5)?.toFixed(2)} | ${percentile(latencies, 0.99)?.toFixed(2)} |`;
    rows.push(row);
    process.stdout.write(`${row}\n`);
  }
}

const lines = [
  "# Token work while sign-ins hash",
  "",
  `- ${new Date().toISOString()}; Node ${process.version}; libuv pool ${pool} threads; argon2id m=${parameters.memoryKiB} KiB, t=${parameters.timeCost}, p=${parameters.parallelism}; load average ${loadavg()[0]?.toFixed(1)} at the end`,
  `- \`node bench/pool-contention.ts\`: 16 sign-ins' hashes kept queued through \`PasswordHasher\`; one token operation every 20 ms, ${SAMPLES} timed.`,
  "",
  "| hashes at once | operation | p50 ms | p99 ms |",
  "| --- | --- | ---: | ---: |",
  ...rows,
  "",
];
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/pool-contention.md", lines.join("\n"));
