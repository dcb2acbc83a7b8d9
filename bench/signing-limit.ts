/**
 * What this machine can sign, per access-token algorithm: signatures per second with as
 * many running at once as libuv has threads (UV_THREADPOOL_SIZE, default 4), on the thread
 * pool, where the server's access tokens are signed (jose, through WebCrypto). A refresh
 * rotation signs one access token, so this is the ceiling of rotations per second, however
 * cheap the rest of a rotation is (HS256: one thread, the event loop, where the server
 * computes it). Prints one JSON line: an array, one entry per algorithm.
 */
import { createHmac, createSecretKey, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { completionsPerSecond } from "./rate.ts";

const seconds = Number(process.env.BENCH_SIGNING_SECONDS ?? 2);
const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
// About the size of a Gatehouse access token's signing input.
const data = Buffer.alloc(420, "e");

const algorithms: Array<{ alg: string; digest: string | null; key: KeyObject; dsaEncoding?: "ieee-p1363" }> = [
  { alg: "RS256", digest: "sha256", key: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey },
  {
    alg: "ES256",
    digest: "sha256",
    key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
    dsaEncoding: "ieee-p1363",
  },
  { alg: "EdDSA", digest: null, key: generateKeyPairSync("ed25519").privateKey },
];

const signOnPool = (entry: (typeof algorithms)[number]) =>
  new Promise<void>((resolve, reject) =>
    sign(entry.digest, data, entry.dsaEncoding ? { key: entry.key, dsaEncoding: entry.dsaEncoding } : entry.key, (e) =>
      e ? reject(e) : resolve(),
    ),
  );

const results: Array<{ alg: string; threads: number; signaturesPerSecond: number }> = [];
for (const entry of algorithms) {
  const signaturesPerSecond = await completionsPerSecond(threads, seconds, () => signOnPool(entry));
  results.push({ alg: entry.alg, threads, signaturesPerSecond });
}
// HS256: the server computes the HMAC on the event loop (src/tokens/jws-sign.ts), one thread.
{
  const key = createSecretKey(Buffer.alloc(32, 1));
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  while (performance.now() < deadline) {
    for (let i = 0; i < 100; i++) createHmac("sha256", key).update(data).digest();
    done += 100;
  }
  results.push({ alg: "HS256", threads: 1, signaturesPerSecond: done / ((performance.now() - started) / 1000) });
}
process.stdout.write(`${JSON.stringify(results)}\n`);
