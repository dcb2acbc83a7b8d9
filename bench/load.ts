/**
 * One measurement: autocannon against a server, every request a POST of a random
 * seeded key. Bodies are built per request from the key list, so both servers get the
 * very same kind of request (same headers, same body shape, same key population).
 */
import autocannon from "autocannon";
import { cpuSecondsOf } from "./servers.ts";

export interface LoadOptions {
  connections: number;
  pipelining: number;
  durationSeconds: number;
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
  /** Share of one core the server and the load generator used (1 = saturated). */
  serverCpu: number | null;
  loadgenCpu: number;
  /**
   * Server CPU time per answered request. Unlike requests/s it does not depend on how
   * much of its core the server was given, so it stays meaningful on a busy machine.
   */
  cpuMicrosPerRequest: number | null;
}

export function requestTemplate(serviceKey: string, keys: readonly string[], scopes: readonly string[]) {
  const headers = { authorization: `Bearer ${serviceKey}`, "content-type": "application/json" };
  const scopesJson = JSON.stringify(scopes);
  return {
    method: "POST",
    path: "/v1/keys/verify",
    headers,
    setupRequest(request: { body?: string }) {
      const key = keys[Math.floor(Math.random() * keys.length)] as string;
      request.body = `{"key":"${key}","scopes":${scopesJson}}`;
      return request;
    },
  };
}

export async function measure(
  target: { url: string; pid: number },
  template: ReturnType<typeof requestTemplate>,
  options: LoadOptions,
): Promise<Measurement> {
  const serverCpuBefore = cpuSecondsOf(target.pid);
  const loadgenBefore = process.cpuUsage();
  const started = performance.now();
  const result = await autocannon({
    url: target.url,
    connections: options.connections,
    pipelining: options.pipelining,
    duration: options.durationSeconds,
    timeout: 10,
    requests: [template],
  });
  const elapsed = (performance.now() - started) / 1000;
  const loadgen = process.cpuUsage(loadgenBefore);
  const serverCpuAfter = cpuSecondsOf(target.pid);
  const serverCpuSeconds =
    serverCpuBefore === null || serverCpuAfter === null ? null : serverCpuAfter - serverCpuBefore;
  return {
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
    cpuMicrosPerRequest:
      serverCpuSeconds === null ? null : (serverCpuSeconds * 1e6) / Math.max(1, result.requests.total),
  };
}
