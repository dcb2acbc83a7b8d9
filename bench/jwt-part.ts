/**
 * A route guarded by the SDK's `requireToken` against the same route unguarded, on one
 * Fastify process (sdk/bench/guarded-api.ts), with access tokens from the run's Gatehouse:
 *
 * - first-seen: the tokens are presented in turn from a pool at least twice the size of
 *   the verifier's cache, so the least-recently-used cache has always just dropped the
 *   token that comes next: every request pays the whole check (form, JWKS key, signature,
 *   claims) and a cache insert, as a token seen for the first time does.
 * - seen-before: a few tokens in turn, default cache: every request after the first few
 *   is a cache hit.
 */
import type { LoadOptions, Template } from "./load.ts";
import { type PairedResult, pairedRounds } from "./paired.ts";
import { startScript } from "./servers.ts";

export interface JwtModeResult extends PairedResult {
  /** What the tokens were signed with. */
  alg: string;
  mode: "first-seen" | "seen-before";
  distinctTokens: number;
  cacheMaxEntries: number;
  target: number;
}

function inTurn(path: string, tokens: readonly string[]): Template {
  let next = 0;
  return {
    method: "GET",
    path,
    setupRequest(request) {
      request.headers = { authorization: `Bearer ${tokens[next++ % tokens.length]}` };
      return request;
    },
  };
}

export async function measureJwtGuard(options: {
  issuer: string;
  audience: string;
  jwksUri: string;
  /** Distinct, unexpired access tokens (from the refresh run). */
  tokens: readonly string[];
  load: LoadOptions;
  rounds: number;
  warmupSeconds: number;
  log: (line: string) => void;
  /** What the tokens are signed with: default the run's GATEHOUSE_JWT_ALG, RS256 unless set. */
  alg?: string;
  /** For HS256 tokens: the Gatehouse's secret (the SDK's `hs256Secret`). */
  hs256Secret?: string;
  /** Default both. */
  modes?: ReadonlyArray<JwtModeResult["mode"]>;
}): Promise<JwtModeResult[]> {
  const results: JwtModeResult[] = [];
  const firstSeenCache = Math.max(1, Math.floor(options.tokens.length / 2));
  const alg = options.alg ?? process.env.GATEHOUSE_JWT_ALG ?? "RS256";
  const modes = [
    { mode: "first-seen", tokens: options.tokens, cacheMaxEntries: firstSeenCache, target: 0.5 },
    { mode: "seen-before", tokens: options.tokens.slice(0, 8), cacheMaxEntries: 10_000, target: 0.85 },
  ] as const;
  for (const mode of modes.filter((m) => (options.modes ?? ["first-seen", "seen-before"]).includes(m.mode))) {
    const api = await startScript("sdk/bench/guarded-api.ts", {
      BENCH_API: JSON.stringify({
        issuer: options.issuer,
        audience: options.audience,
        jwksUri: options.jwksUri,
        maxEntries: mode.cacheMaxEntries,
        ...(options.hs256Secret ? { hs256Secret: options.hs256Secret } : { algorithms: [alg] }),
      }),
    });
    try {
      const probe = await fetch(`${api.url}/guarded`, { headers: { authorization: `Bearer ${mode.tokens[0]}` } });
      if (probe.status !== 200) throw new Error(`guarded route answered ${probe.status}: ${await probe.text()}`);
      const result = await pairedRounds(
        {
          reference: { target: api, template: inTurn("/open", mode.tokens) },
          subject: { target: api, template: inTurn("/guarded", mode.tokens) },
        },
        {
          load: options.load,
          rounds: options.rounds,
          warmupSeconds: options.warmupSeconds,
          label: `jwt ${alg} ${mode.mode}`,
          log: options.log,
        },
      );
      results.push({
        ...result,
        alg,
        mode: mode.mode,
        distinctTokens: mode.tokens.length,
        cacheMaxEntries: mode.cacheMaxEntries,
        target: mode.target,
      });
    } finally {
      await api.stop();
    }
  }
  return results;
}
