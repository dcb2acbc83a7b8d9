/**
 * The baseline: a bare Fastify 5 route at the same path, parsing the same JSON body and
 * answering a small JSON. It runs in its own process and prints its port on stdout.
 */
import Fastify from "fastify";

const app = Fastify({ logger: false });
app.post("/v1/keys/verify", async (request) => {
  const body = request.body as { key?: unknown } | null;
  return { valid: typeof body?.key === "string" };
});
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${address}\n`);
process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
