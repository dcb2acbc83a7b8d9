/**
 * In-process micro-benchmark of the JWT libraries Gatehouse could verify and sign access
 * tokens with: `jose` (WebCrypto: every sign and verify is an async job on libuv's thread
 * pool), `fast-jwt` (synchronous `node:crypto` on the calling thread) and bare
 * `crypto.sign`/`crypto.verify` (the signature alone: no decoding, no claim checks, the
 * floor any library can reach). RS256, ES256 and EdDSA; µs per operation, one at a time.
 *
 * - wall µs: elapsed time per operation, one after the other (for jose it includes the
 *   hop to a pool thread and back);
 * - CPU µs: the process's CPU time (every thread, `process.cpuUsage`) per operation: what
 *   one operation costs the machine wherever it runs;
 * - on the loop µs: for jose, CPU spent on the event loop's thread per operation (the
 *   rest ran on a pool thread); for the synchronous paths, everything.
 *
 * Verification uses each library as Gatehouse would: the key imported once, the pinned
 * algorithm, issuer, audience and `typ` checked. Prints the table and writes
 * bench/results/jwt-libraries.md. `BENCH_JWT_SECONDS` (default 3) per case, spread over 7
 * rounds interleaved with the other libraries; each figure is the median round.
 */
import { generateKeyPairSync, type KeyObject, randomUUID, sign, verify } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, loadavg } from "node:os";
import { createSigner, createVerifier } from "fast-jwt";
import { jwtVerify, SignJWT } from "jose";
import { parseCompactJws, verifyCompactJws } from "../src/tokens/compact-jws.ts";

const seconds = Number(process.env.BENCH_JWT_SECONDS ?? 3);
const ROUNDS = 7;
const ISSUER = "https://gatehouse.example";
const ALGORITHMS = ["RS256", "ES256", "EdDSA"] as const;
type Algorithm = (typeof ALGORITHMS)[number];

interface Row {
  alg: Algorithm;
  operation: "verify" | "sign";
  library: string;
  wallMicros: number;
  cpuMicros: number;
  loopMicros: number;
  ops: number;
}

function pair(alg: Algorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  if (alg === "RS256") return generateKeyPairSync("rsa", { modulusLength: 2048 });
  if (alg === "ES256") return generateKeyPairSync("ec", { namedCurve: "P-256" });
  return generateKeyPairSync("ed25519");
}

/** node's digest name for crypto.sign/verify, and the JWS signature encoding. */
function nodeParameters(alg: Algorithm): { digest: string | null; dsaEncoding?: "ieee-p1363" } {
  if (alg === "EdDSA") return { digest: null };
  return alg === "ES256" ? { digest: "sha256", dsaEncoding: "ieee-p1363" } : { digest: "sha256" };
}

/**
 * The KeyObject itself where the JWS encoding is node's default (RSA, Ed25519): node 24
 * spends ~8 µs per call rejecting an options object as a KeyObject and as a CryptoKey
 * before it reads `key` from it. ES256 needs the options object (IEEE P1363 signatures).
 */
function bareKey(key: KeyObject, dsaEncoding: "ieee-p1363" | undefined) {
  return dsaEncoding ? { key, dsaEncoding } : key;
}

/** Thread CPU of the event loop's thread, from /proc (process.threadCpuUsage where node has it). */
function loopCpuMicros(): number {
  const usage = process.threadCpuUsage?.();
  if (usage) return usage.user + usage.system;
  return Number.NaN;
}

interface Sample {
  wallMicros: number;
  cpuMicros: number;
  loopMicros: number;
  ops: number;
}

/** One timed run of `operation`, one call at a time, for `ms`. */
async function sample(operation: () => unknown, isAsync: boolean, ms: number): Promise<Sample> {
  let ops = 0;
  const cpuBefore = process.cpuUsage();
  const loopBefore = loopCpuMicros();
  const started = performance.now();
  const deadline = started + ms;
  if (isAsync) {
    while (performance.now() < deadline) {
      await operation();
      ops++;
    }
  } else {
    while (performance.now() < deadline) {
      for (let i = 0; i < 16; i++) operation();
      ops += 16;
    }
  }
  const elapsedMicros = (performance.now() - started) * 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const loop = loopCpuMicros() - loopBefore;
  return { ops, wallMicros: elapsedMicros / ops, cpuMicros: (cpu.user + cpu.system) / ops, loopMicros: loop / ops };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1] as number;

interface Case {
  row: Omit<Row, keyof Sample>;
  operation: () => unknown;
}

/**
 * The cases of one algorithm and operation in interleaved rounds (A B C, A B C, …), so a
 * burst of other work on the shared machine hits every library alike; per case, the
 * median round.
 */
async function measureAll(cases: Case[]): Promise<Row[]> {
  const kinds = cases.map((c) => c.operation() instanceof Promise);
  // Warm-up: JIT, key caches, pool threads.
  for (const [i, c] of cases.entries()) await sample(c.operation, kinds[i] === true, 300);
  const samples: Sample[][] = cases.map(() => []);
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, c] of cases.entries()) {
      samples[i]?.push(await sample(c.operation, kinds[i] === true, (seconds * 1000) / ROUNDS));
    }
  }
  return cases.map((c, i) => {
    const all = samples[i] ?? [];
    return {
      ...c.row,
      ops: all.reduce((sum, s) => sum + s.ops, 0),
      wallMicros: median(all.map((s) => s.wallMicros)),
      cpuMicros: median(all.map((s) => s.cpuMicros)),
      loopMicros: median(all.map((s) => s.loopMicros)),
    };
  });
}

const rows: Row[] = [];
for (const alg of ALGORITHMS) {
  const { privateKey, publicKey } = pair(alg);
  const kid = "bench-key-0123456789abcdef";
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: ISSUER,
    sub: "usr_0123456789abcdef",
    aud: ISSUER,
    iat: now,
    exp: now + 900,
    jti: randomUUID(),
    scope: "payments:read",
    client_id: "gatehouse",
    sid: "fam_0123456789abcdef",
  };
  const header = { alg, typ: "at+jwt", kid };
  const token = await new SignJWT(claims).setProtectedHeader(header).sign(privateKey);
  const dot = token.lastIndexOf(".");
  const signingInput = Buffer.from(token.slice(0, dot));
  const signature = Buffer.from(token.slice(dot + 1), "base64url");
  const { digest, dsaEncoding } = nodeParameters(alg);
  const publicPem = publicKey.export({ type: "spki", format: "pem" }).toString();
  const privatePem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();

  const fastVerify = createVerifier({
    key: publicPem,
    algorithms: [alg],
    allowedIss: ISSUER,
    allowedAud: ISSUER,
    checkTyp: "at+jwt",
    requiredClaims: ["iss", "sub", "aud", "iat", "exp", "jti"],
  });
  const fastSign = createSigner({ key: privatePem, algorithm: alg, kid, header: { alg, typ: "at+jwt", kid } });
  const joseOptions = { algorithms: [alg], issuer: ISSUER, audience: ISSUER, typ: "at+jwt" };

  const pins = {
    issuer: ISSUER,
    audience: ISSUER,
    typ: "at+jwt",
    requiredClaims: ["iss", "sub", "aud", "iat", "exp", "jti"],
  };
  rows.push(
    ...(await measureAll([
      {
        row: { alg, operation: "verify", library: "jose 6 (WebCrypto)" },
        operation: () => jwtVerify(token, publicKey, joseOptions),
      },
      { row: { alg, operation: "verify", library: "fast-jwt 6 (node:crypto)" }, operation: () => fastVerify(token) },
      {
        row: { alg, operation: "verify", library: "Gatehouse: node:crypto with its pins (src/tokens/compact-jws.ts)" },
        operation: () => {
          const jws = parseCompactJws(token);
          if (jws.header.alg !== alg || jws.header.kid !== kid) throw new Error("unexpected header");
          return verifyCompactJws(jws, publicKey, alg, pins);
        },
      },
      {
        row: { alg, operation: "verify", library: "bare crypto.verify (signature only)" },
        operation: () => verify(digest, signingInput, bareKey(publicKey, dsaEncoding), signature),
      },
      {
        row: { alg, operation: "verify", library: "bare crypto.verify, key in an options object (as fast-jwt)" },
        operation: () => verify(digest, signingInput, { key: publicKey, dsaEncoding }, signature),
      },
    ])),
    ...(await measureAll([
      {
        row: { alg, operation: "sign", library: "jose 6 (WebCrypto)" },
        operation: () => new SignJWT({ ...claims, jti: randomUUID() }).setProtectedHeader(header).sign(privateKey),
      },
      {
        row: { alg, operation: "sign", library: "fast-jwt 6 (node:crypto)" },
        operation: () => fastSign({ ...claims, jti: randomUUID() }),
      },
      {
        row: { alg, operation: "sign", library: "bare crypto.sign (signature only)" },
        operation: () => sign(digest, signingInput, bareKey(privateKey, dsaEncoding)),
      },
    ])),
  );
}

const format = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "n/a");
const lines = [
  "# JWT libraries, in process",
  "",
  `- ${new Date().toISOString()}; ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores; Node ${process.version}, OpenSSL ${process.versions.openssl}; load average ${loadavg()[0]?.toFixed(1)} at the end`,
  `- \`node bench/jwt-libraries.ts\` (${seconds} s per case in ${ROUNDS} rounds interleaved with the other libraries, one operation at a time after a warm-up; each figure is the median round). Keys imported once; verification pins the algorithm, issuer, audience and \`typ\`.`,
  "- wall µs: elapsed per operation. CPU µs: the process's CPU (all threads) per operation. On the loop µs: CPU on the event loop's thread (jose runs the signature on a libuv pool thread).",
  "",
  "| alg | operation | library | wall µs/op | CPU µs/op | on the loop µs/op | ops |",
  "| --- | --- | --- | ---: | ---: | ---: | ---: |",
  ...rows.map(
    (row) =>
      `| ${row.alg} | ${row.operation} | ${row.library} | ${format(row.wallMicros)} | ${format(row.cpuMicros)} | ${format(row.loopMicros)} | ${row.ops.toLocaleString("en")} |`,
  ),
  "",
];
mkdirSync("bench/results", { recursive: true });
writeFileSync("bench/results/jwt-libraries.md", lines.join("\n"));
process.stdout.write(lines.join("\n"));
