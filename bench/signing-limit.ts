/**
 * What this machine can sign, per access-token algorithm, the way the server signs
 * (`signCompactJws`, src/tokens/jws-sign.ts, with a token-sized payload): signatures per
 * second with as many in flight as libuv has threads (UV_THREADPOOL_SIZE, default 4),
 * where the asymmetric signatures run; HS256 one at a time, on the calling thread, where
 * the server computes it. A refresh rotation signs one access token, so this is the
 * ceiling of rotations per second, however cheap the rest of a rotation is. Prints one
 * JSON line: an array, one entry per algorithm.
 */
import { createSecretKey, generateKeyPairSync, type KeyObject } from "node:crypto";
import type { SigningAlgorithm } from "../src/storage/types.ts";
import { signCompactJws } from "../src/tokens/jws-sign.ts";
import { completionsPerSecond } from "./rate.ts";

const seconds = Number(process.env.BENCH_SIGNING_SECONDS ?? 2);
const threads = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
const header = { typ: "at+jwt", kid: "bench-signing-limit-kid" };
// About the claims of a Gatehouse access token.
const claims = {
  iss: "http://127.0.0.1:8080",
  sub: "usr_0194f3a2b1c4AbCdEfGhIjKlMnO",
  aud: "http://127.0.0.1:8080",
  iat: 1_800_000_000,
  exp: 1_800_000_900,
  jti: "0b5e8f1c-6f7a-4c2e-9d3b-2a1f0e9d8c7b",
  scope: "payments:read payments:write",
  client_id: "gatehouse",
  sid: "fam_0194f3a2b1c4AbCdEfGhIjKlMnO",
};

const algorithms: Array<{ alg: SigningAlgorithm; key: KeyObject; inFlight: number }> = [
  { alg: "RS256", key: generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey, inFlight: threads },
  { alg: "ES256", key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey, inFlight: threads },
  { alg: "EdDSA", key: generateKeyPairSync("ed25519").privateKey, inFlight: threads },
  { alg: "HS256", key: createSecretKey(Buffer.alloc(32, 1)), inFlight: 1 },
];

const results: Array<{ alg: string; threads: number; signaturesPerSecond: number }> = [];
for (const { alg, key, inFlight } of algorithms) {
  const signaturesPerSecond = await completionsPerSecond(inFlight, seconds, () =>
    signCompactJws(alg, key, header, claims),
  );
  results.push({ alg, threads: inFlight, signaturesPerSecond });
}
process.stdout.write(`${JSON.stringify(results)}\n`);
