/**
 * `node bench/work-curve.ts`: what a little more work per request costs on this machine.
 * The bare route (bench/baseline-server.ts) is measured as it is and then made to spin
 * 1, 2, 3, 5, 10, 20 and 40 µs more per request (BENCH_WORK_MICROS to change the list),
 * each under the load of `npm run bench` (autocannon, 50 connections, the same requests,
 * server on core 0, load generator on core 1). For each: requests/s, CPU µs per request (user and system),
 * and the CPU ratio to the bare route as it is, measured just before.
 *
 * Why: the verify target (0.70x) is a ratio to that route. If 5 µs more work already
 * costs the route far more than 5 µs, the target bounds how much a server may do per
 * request, whatever it does. docs/benchmarks.md, "The yardstick", has the figures.
 * BENCH_REPEAT (default 2) runs the whole list again; ~20 s a point.
 */
import { measure, requestTemplate, type Template } from "./load.ts";
import { cpuTimesOf, pinSelf, startBaseline } from "./servers.ts";

const points = (process.env.BENCH_WORK_MICROS ?? "1,2,3,5,10,20,40").split(",").map(Number);
const repeat = Number(process.env.BENCH_REPEAT ?? 2);
const load = { connections: 50, pipelining: 1, durationSeconds: 5 };
pinSelf();

// The verify requests of `npm run bench`, built per request by the load generator as there
// (its speed decides where extra work starts to show); the bare route only parses them.
const template: Template = requestTemplate(`gate_${"0".repeat(49)}`, [`gate_${"1".repeat(49)}`], ["payments:read"]);

async function point(micros: number) {
  const server = await startBaseline(micros);
  try {
    await measure(server, template, { ...load, durationSeconds: 2 });
    const before = cpuTimesOf(server.pid);
    const result = await measure(server, template, load);
    const after = cpuTimesOf(server.pid);
    if (before === null || after === null) throw new Error("CPU time needs /proc (Linux)");
    const per = (seconds: number) => (seconds * 1e6) / Math.max(1, result.requests);
    return {
      requestsPerSecond: result.requestsPerSecond,
      user: per(after.user - before.user),
      system: per(after.system - before.system),
    };
  } finally {
    await server.stop();
  }
}

const line = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
console.log(line(["extra work µs", "req/s", "CPU µs/req (user + system)", "CPU ratio to the bare route"]));
console.log(line(["---:", "---:", "---:", "---:"]));
for (let round = 0; round < repeat; round++) {
  for (const micros of points) {
    const bare = await point(0);
    const spinning = await point(micros);
    const cpu = (p: { user: number; system: number }) => p.user + p.system;
    console.log(
      line([
        micros,
        Math.round(spinning.requestsPerSecond),
        `${cpu(spinning).toFixed(1)} (${spinning.user.toFixed(1)} + ${spinning.system.toFixed(1)}) vs ${cpu(bare).toFixed(1)}`,
        `${(cpu(bare) / cpu(spinning)).toFixed(2)}x`,
      ]),
    );
  }
}
