/**
 * The baseline: bare Fastify 5 routes at the paths Gatehouse is measured on, each parsing
 * the same JSON body and answering a small JSON. It runs in its own process and prints its
 * port on stdout.
 *
 * BENCH_EXTRA_WORK_MICROS makes the verify route spin for that long on every request
 * before it answers: the benchmark's yardstick for what a little more work per request
 * costs on the machine at hand (bench/run.ts, "work ceiling").
 */
import Fastify from "fastify";

const extraWorkMs = Number(process.env.BENCH_EXTRA_WORK_MICROS ?? 0) / 1000;

const app = Fastify({ logger: false });
app.post("/v1/keys/verify", async (request) => {
  if (extraWorkMs > 0) {
    const until = performance.now() + extraWorkMs;
    while (performance.now() < until) {}
  }
  const body = request.body as { key?: unknown } | null;
  return { valid: typeof body?.key === "string" };
});
// Sign-in and refresh: the same shape of answer as a token response, without the work.
const tokens = { access_token: "bare", token_type: "Bearer", expires_in: 900, refresh_token: "bare", scope: "" };
app.post("/auth/login", async () => tokens);
app.post("/auth/refresh", async () => tokens);
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${address}\n`);
process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
