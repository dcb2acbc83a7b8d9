/**
 * Issue 3's figures on one Gatehouse (SQLite or PostgreSQL): sign-ins per second against
 * the argon2id limit measured in the same run, the p99 of another route while sign-ins
 * run, and refresh rotations per second (bare route as the reference).
 */
import { combined, type LoadOptions, type Measurement, measure, measureTogether, type Template } from "./load.ts";
import { type PairedResult, pairedRounds } from "./paired.ts";
import { type Placement, type ServerProcess, startScript } from "./servers.ts";

export const BENCH_PASSWORD = "correct horse battery staple 42";
export const BENCH_SCOPES = ["payments:read"];

/** Raised brakes: successful sign-ins never count, but a stray failure must not throttle the run. */
export const LOGIN_ENV = {
  GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "1000",
  GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP: "100000",
};

export interface TokenPair {
  access_token: string;
  refresh_token: string;
}

async function post(url: string, body: unknown, bearer?: string): Promise<{ status: number; json: unknown }> {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...(bearer ? { authorization: `Bearer ${bearer}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, json: await response.json().catch(() => null) };
}

function isTokenPair(value: unknown): value is TokenPair {
  return (
    typeof value === "object" &&
    value !== null &&
    "access_token" in value &&
    typeof value.access_token === "string" &&
    "refresh_token" in value &&
    typeof value.refresh_token === "string"
  );
}

/** A real user, created through the admin API, who may sign in. */
export async function createBenchUser(gatehouseUrl: string, adminKey: string, email: string): Promise<void> {
  const { status, json } = await post(
    `${gatehouseUrl}/v1/users`,
    { email, password: BENCH_PASSWORD, scopes: BENCH_SCOPES },
    adminKey,
  );
  if (status !== 201) throw new Error(`POST /v1/users answered ${status}: ${JSON.stringify(json)}`);
}

export async function signIn(gatehouseUrl: string, email: string): Promise<TokenPair> {
  const { status, json } = await post(`${gatehouseUrl}/auth/login`, { email, password: BENCH_PASSWORD });
  if (status !== 200 || !isTokenPair(json)) throw new Error(`POST /auth/login answered ${status}`);
  return json;
}

/** `count` sign-ins, a few at a time (each costs an argon2id hash). */
export async function signInMany(gatehouseUrl: string, email: string, count: number): Promise<TokenPair[]> {
  const pairs: TokenPair[] = [];
  const worker = async () => {
    while (pairs.length < count) pairs.push(await signIn(gatehouseUrl, email));
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return pairs.slice(0, count);
}

export function loginTemplate(email: string): Template {
  return {
    method: "POST",
    path: "/auth/login",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: BENCH_PASSWORD }),
  };
}

/**
 * Every request spends a refresh token never used before: a shared pool of unused tokens,
 * filled by sign-ins before the run and by every rotation's answer during it (autocannon
 * resets per-connection context between requests, so a pool, not a chain per connection).
 * Each answer's access token is kept too (`accessTokens`): distinct, fresh tokens for the
 * guarded-route benchmark.
 */
export function refreshTemplate(pool: string[], accessTokens?: string[]): Template & { lost: () => number } {
  let lost = 0;
  return {
    method: "POST",
    path: "/auth/refresh",
    headers: { "content-type": "application/json" },
    setupRequest(request) {
      const token = pool.shift();
      if (token === undefined) lost++;
      request.body = `{"refresh_token":"${token ?? "pool-empty"}"}`;
      return request;
    },
    onResponse(status, body) {
      if (status !== 200) return;
      const parsed: unknown = JSON.parse(body);
      if (!isTokenPair(parsed)) return;
      pool.push(parsed.refresh_token);
      if (accessTokens && accessTokens.length < 200_000) accessTokens.push(parsed.access_token);
    },
    lost: () => lost,
  };
}

export interface ArgonLimit {
  parameters: { memoryKiB: number; timeCost: number; parallelism: number };
  threads: number;
  hashMs: number;
  /** threads × 1 / (time of one hash alone). */
  fromHashTime: number;
  /** Measured: `threads` hashes at once, on the server's cores. */
  hashesPerSecond: number;
}

/** Signatures per second of each access-token algorithm on this machine (bench/signing-limit.ts). */
export interface SigningLimit {
  alg: string;
  threads: number;
  signaturesPerSecond: number;
}

export async function measureSigningLimits(placement: Placement): Promise<SigningLimit[]> {
  const child = await startScript("bench/signing-limit.ts", {}, placement);
  await child.stop();
  return JSON.parse(child.line) as SigningLimit[];
}

export async function measureArgonLimit(placement: Placement, env: NodeJS.ProcessEnv): Promise<ArgonLimit> {
  const child = await startScript("bench/argon2-limit.ts", env, placement);
  await child.stop();
  return JSON.parse(child.line) as ArgonLimit;
}

export interface SignInResult {
  limit: ArgonLimit;
  signIns: Measurement;
  /** The bare route at the same path, same connections, measured just before. */
  bare: Measurement;
  /** Sign-ins per second ÷ the measured hashing limit. */
  ofLimit: number;
  /** With paired rounds (bench/run.ts): every round's share of its own limit, in order. */
  roundsOfLimit?: number[];
  probeRate: number;
  /** Other routes at a steady rate, alone and while sign-ins run. */
  probes: Array<{ path: string; alone: Measurement; duringSignIns: Measurement }>;
}

/**
 * Sign-ins at full load with a steady trickle of other requests alongside, and the same
 * trickle alone: GET /healthz (event loop only) and GET /auth/me (a synchronous RS256 check,
 * plus storage reads). If hashing stays out of their way, their p99 hardly moves.
 */
export async function measureSignIns(
  baseline: ServerProcess,
  gatehouse: ServerProcess,
  options: {
    email: string;
    accessToken: string;
    limit: ArgonLimit;
    durationSeconds: number;
    connections: number;
    log: (line: string) => void;
  },
): Promise<SignInResult> {
  const probeRate = 50;
  const probeTemplates: Template[] = [
    { method: "GET", path: "/healthz" },
    { method: "GET", path: "/auth/me", headers: { authorization: `Bearer ${options.accessToken}` } },
  ];
  const probeLoad: LoadOptions = {
    connections: 2,
    pipelining: 1,
    durationSeconds: options.durationSeconds,
    overallRate: probeRate,
  };
  const target = { url: gatehouse.url, pids: [gatehouse.pid] };
  const bare = await measure(baseline, loginTemplate(options.email), {
    connections: options.connections,
    pipelining: 1,
    durationSeconds: options.durationSeconds,
  });
  const alone = await measureTogether(probeTemplates.map((template) => ({ target, template, options: probeLoad })));
  // Warm-up of the sign-in path (JIT, pool threads, prepared statements).
  await measure(gatehouse, loginTemplate(options.email), { connections: 8, pipelining: 1, durationSeconds: 2 });
  const [signIns, ...during] = await measureTogether([
    {
      target,
      template: loginTemplate(options.email),
      options: { connections: options.connections, pipelining: 1, durationSeconds: options.durationSeconds },
    },
    ...probeTemplates.map((template) => ({ target, template, options: probeLoad })),
  ]);
  const loginRun = signIns as Measurement;
  // The CPU of the run is charged to every request; per sign-in, count the sign-ins only.
  const everything = combined([loginRun, ...during]);
  const perSignIn =
    everything.cpuMicrosPerRequest === null
      ? null
      : (everything.cpuMicrosPerRequest * everything.requests) / Math.max(1, loginRun.requests);
  const probes = probeTemplates.map((template, i) => ({
    path: template.path,
    alone: alone[i] as Measurement,
    duringSignIns: during[i] as Measurement,
  }));
  const result: SignInResult = {
    limit: options.limit,
    signIns: { ...loginRun, cpuMicrosPerRequest: perSignIn },
    bare,
    ofLimit: loginRun.requestsPerSecond / options.limit.hashesPerSecond,
    probeRate,
    probes,
  };
  options.log(
    `  sign-ins ${loginRun.requestsPerSecond.toFixed(1)}/s (limit ${options.limit.hashesPerSecond.toFixed(1)}/s, ${(result.ofLimit * 100).toFixed(0)}%), non-2xx ${loginRun.non2xx + loginRun.errors}; ${probes.map((p) => `${p.path} p99 ${p.alone.p99Ms} ms alone, ${p.duringSignIns.p99Ms} ms during`).join("; ")}`,
  );
  return result;
}

export interface RefreshResult extends PairedResult {
  /** Requests sent without an unused token (the pool ran dry): should be 0. */
  poolEmpty: number;
}

export async function measureRefresh(
  baseline: ServerProcess,
  gatehouse: ServerProcess,
  options: {
    pool: string[];
    /** Refills the pool before each measurement: each one strands a token per connection. */
    topUp: () => Promise<void>;
    accessTokens?: string[];
    load: LoadOptions;
    rounds: number;
    warmupSeconds: number;
    label: string;
    log: (line: string) => void;
  },
): Promise<RefreshResult> {
  const template = refreshTemplate(options.pool, options.accessTokens);
  const bare = refreshTemplate([]);
  const result = await pairedRounds(
    { reference: { target: baseline, template: bare }, subject: { target: gatehouse, template } },
    {
      load: options.load,
      rounds: options.rounds,
      warmupSeconds: options.warmupSeconds,
      label: options.label,
      log: options.log,
      beforeSubject: options.topUp,
    },
  );
  return { ...result, poolEmpty: template.lost() };
}
