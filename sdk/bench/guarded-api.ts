/**
 * The API under test: one Fastify process with the same tiny route twice, unguarded
 * (`/open`) and guarded by `requireToken` (`/guarded`), so both are measured on the very
 * same server. Settings come in BENCH_API as JSON; the URL goes out on stdout.
 */
import Fastify from "fastify";
import { gatehousePlugin, requireToken } from "../src/fastify.ts";
import { createTokenVerifier } from "../src/index.ts";

const settings: unknown = JSON.parse(process.env.BENCH_API ?? "null");
if (
  typeof settings !== "object" ||
  settings === null ||
  !("issuer" in settings && typeof settings.issuer === "string") ||
  !("audience" in settings && typeof settings.audience === "string") ||
  !("jwksUri" in settings && typeof settings.jwksUri === "string") ||
  !("maxEntries" in settings && typeof settings.maxEntries === "number")
) {
  throw new TypeError("BENCH_API must be {issuer, audience, jwksUri, maxEntries, algorithms?, hs256Secret?}");
}
const ALGORITHMS = ["RS256", "ES256", "EdDSA"] as const;
type Algorithm = (typeof ALGORITHMS)[number];
const isAlgorithm = (value: unknown): value is Algorithm => ALGORITHMS.some((name) => name === value);
const listed = "algorithms" in settings && Array.isArray(settings.algorithms) ? settings.algorithms : ["RS256"];
const algorithms = listed.filter(isAlgorithm);
if (algorithms.length !== listed.length || algorithms.length === 0) {
  throw new TypeError(`BENCH_API.algorithms must list some of ${ALGORITHMS.join(", ")}`);
}
// HS256 (a Gatehouse on GATEHOUSE_JWT_ALG=HS256): the shared secret instead of the JWKS.
const secret = "hs256Secret" in settings && typeof settings.hs256Secret === "string" ? settings.hs256Secret : null;
const tokenVerifier = createTokenVerifier({
  issuer: settings.issuer,
  audience: settings.audience,
  cache: { maxEntries: settings.maxEntries },
  ...(secret ? { hs256Secret: secret } : { jwksUri: settings.jwksUri, algorithms }),
});
const app = Fastify({ logger: false });
await app.register(gatehousePlugin, { tokenVerifier });
const answer = { items: [] };
app.get("/open", async () => answer);
app.get("/guarded", { preHandler: requireToken({ scopes: ["payments:read"] }) }, async () => answer);
const address = await app.listen({ port: 0, host: "127.0.0.1" });
process.stdout.write(`${address}\n`);
process.once("SIGTERM", () => void app.close().then(() => process.exit(0)));
