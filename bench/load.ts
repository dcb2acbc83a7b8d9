/**
 * One measurement: autocannon against one or more servers at once, with the server's CPU
 * time per answered request from /proc. Requests are built per request (random keys,
 * fresh refresh tokens), so a baseline and Gatehouse get the very same kind of request.
 */
import autocannon, { type Request } from "autocannon";
import { cpuSecondsOf } from "./servers.ts";

export interface LoadOptions {
  connections: number;
  pipelining: number;
  durationSeconds: number;
  /** Requests per second over all connections; unset: as fast as the server answers. */
  overallRate?: number;
}

export interface Measurement {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** Share of one core the server(s) and the load generator used (1 = one core saturated). */
  serverCpu: number | null;
  loadgenCpu: number;
  /**
   * Server CPU time per answered request. Unlike requests/s it does not depend on how
   * much of its core the server was given, so it stays meaningful on a busy machine.
   */
  cpuMicrosPerRequest: number | null;
}

export type Template = Request & { path: string; method: string };

export function requestTemplate(serviceKey: string, keys: readonly string[], scopes: readonly string[]): Template {
  const headers = { authorization: `Bearer ${serviceKey}`, "content-type": "application/json" };
  const scopesJson = JSON.stringify(scopes);
  return {
    method: "POST",
    path: "/v1/keys/verify",
    headers,
    setupRequest(request) {
      const key = keys[Math.floor(Math.random() * keys.length)] as string;
      request.body = `{"key":"${key}","scopes":${scopesJson}}`;
      return request;
    },
  };
}

/** A target: where to send the load, and whose CPU time it costs (one or more processes). */
export interface Target {
  url: string;
  pids: readonly number[];
}

function cpuOf(pids: readonly number[]): number | null {
  let total = 0;
  for (const pid of pids) {
    const seconds = cpuSecondsOf(pid);
    if (seconds === null) return null;
    total += seconds;
  }
  return total;
}

/**
 * Several autocannon instances at once (one per entry: e.g. two nodes, or a load and a
 * latency probe), each summarised on its own; CPU time is of all the entries' processes
 * together, charged to all their answered requests.
 */
export async function measureTogether(
  entries: ReadonlyArray<{ target: Target; template: Template; options: LoadOptions }>,
): Promise<Measurement[]> {
  const pids = [...new Set(entries.flatMap((entry) => entry.target.pids))];
  const serverCpuBefore = cpuOf(pids);
  const loadgenBefore = process.cpuUsage();
  const started = performance.now();
  const results = await Promise.all(
    entries.map(({ target, template, options }) =>
      autocannon({
        url: target.url,
        connections: options.connections,
        pipelining: options.pipelining,
        duration: options.durationSeconds,
        ...(options.overallRate ? { overallRate: options.overallRate } : {}),
        timeout: 10,
        requests: [template],
      }),
    ),
  );
  const elapsed = (performance.now() - started) / 1000;
  const loadgen = process.cpuUsage(loadgenBefore);
  const serverCpuAfter = cpuOf(pids);
  const serverCpuSeconds =
    serverCpuBefore === null || serverCpuAfter === null ? null : serverCpuAfter - serverCpuBefore;
  const answered = results.reduce((sum, result) => sum + result.requests.total, 0);
  return results.map((result) => ({
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    meanMs: result.latency.mean,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    serverCpu: serverCpuSeconds === null ? null : serverCpuSeconds / elapsed,
    loadgenCpu: (loadgen.user + loadgen.system) / 1e6 / elapsed,
    cpuMicrosPerRequest: serverCpuSeconds === null ? null : (serverCpuSeconds * 1e6) / Math.max(1, answered),
  }));
}

export async function measure(
  target: { url: string; pid: number },
  template: Template,
  options: LoadOptions,
): Promise<Measurement> {
  const [only] = await measureTogether([{ target: { url: target.url, pids: [target.pid] }, template, options }]);
  return only as Measurement;
}

/** Several measurements summed as one (two nodes at once): requests/s add, latencies are the worst. */
export function combined(parts: readonly Measurement[]): Measurement {
  const sum = (pick: (m: Measurement) => number) => parts.reduce((total, m) => total + pick(m), 0);
  const first = parts[0] as Measurement;
  return {
    requestsPerSecond: sum((m) => m.requestsPerSecond),
    p50Ms: Math.max(...parts.map((m) => m.p50Ms)),
    p99Ms: Math.max(...parts.map((m) => m.p99Ms)),
    meanMs:
      sum((m) => m.meanMs * m.requests) /
      Math.max(
        1,
        sum((m) => m.requests),
      ),
    requests: sum((m) => m.requests),
    non2xx: sum((m) => m.non2xx),
    errors: sum((m) => m.errors),
    timeouts: sum((m) => m.timeouts),
    serverCpu: first.serverCpu,
    loadgenCpu: first.loadgenCpu,
    cpuMicrosPerRequest: first.cpuMicrosPerRequest,
  };
}
