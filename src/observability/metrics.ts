import type { FastifyInstance } from "fastify";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { PostgresStorage } from "../storage/postgres/postgres-storage.ts";
import type { Storage } from "../storage/types.ts";
import { CounterTally, type TallySeries } from "./counter-tally.ts";
import type { IssuedKind } from "./issued.ts";

/**
 * Prometheus metrics. One registry per app (not prom-client's global), so several
 * Gatehouse instances in one process — tests — do not collide.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly requests: Counter<"method" | "route" | "status">;
  readonly latency: Histogram<"method" | "route">;
  readonly verifications: Counter<"outcome">;
  readonly rateLimitRejections: Counter<"where">;
  readonly tokensIssued: Counter<"kind">;
  /** Counts kept in plain numbers where they happen, handed to the counters above when scraped. */
  private readonly requestTally = new CounterTally<"method" | "route" | "status">();
  private readonly verificationTally = new CounterTally<"outcome">();
  private readonly issuedTally = new CounterTally<"kind">();

  constructor(storage: Storage) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: "gatehouse_" });
    this.requests = new Counter({
      name: "gatehouse_http_requests_total",
      help: "HTTP requests answered, by route template and status",
      labelNames: ["method", "route", "status"],
      registers,
      collect: () => this.requestTally.drainInto(this.requests),
    });
    this.latency = new Histogram({
      name: "gatehouse_http_request_duration_seconds",
      help: "Time from request received to response sent",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.verifications = new Counter({
      name: "gatehouse_key_verifications_total",
      help: "API key verifications by outcome (VALID or the failure code)",
      labelNames: ["outcome"],
      registers,
      collect: () => this.verificationTally.drainInto(this.verifications),
    });
    this.rateLimitRejections = new Counter({
      name: "gatehouse_rate_limit_rejections_total",
      help: "Requests or verifications refused by a rate limit",
      labelNames: ["where"],
      registers,
    });
    this.tokensIssued = new Counter({
      name: "gatehouse_tokens_issued_total",
      help: "Credentials issued, by kind (api_key, access_token, refresh_token, session)",
      labelNames: ["kind"],
      registers,
      collect: () => this.issuedTally.drainInto(this.tokensIssued),
    });
    if (isPostgres(storage)) {
      const pool = storage.database.pool;
      new Gauge({
        name: "gatehouse_db_pool_connections",
        help: "PostgreSQL pool connections by state",
        labelNames: ["state"],
        registers,
        collect() {
          this.set({ state: "total" }, pool.totalCount);
          this.set({ state: "idle" }, pool.idleCount);
          this.set({ state: "waiting" }, pool.waitingCount);
        },
      });
    }
  }

  /** Counts one credential issued (a sign-in issues an access and a refresh token). */
  countIssued(kind: IssuedKind): void {
    this.issuedTally.seriesFor(kind, () => ({ kind })).pending++;
  }

  /** Counts one key verification by its verdict (VALID or the failure code). */
  countVerification(outcome: string): void {
    this.verificationTally.seriesFor(outcome, () => ({ outcome })).pending++;
  }

  /**
   * Counts every response by its route template (never the raw URL: ids would explode
   * cardinality). A callback hook (no promise per request), and the labelled children are
   * made once per method, route and status rather than from label objects on every request.
   */
  install(app: FastifyInstance): void {
    const children = new Map<string, ResponseMetrics>();
    const httpRejections = this.rateLimitRejections.labels("http");
    app.addHook("onResponse", (request, reply, done) => {
      const status = reply.statusCode;
      const route = request.routeOptions.url ?? "unmatched";
      const key = `${status} ${request.method} ${route}`;
      let child = children.get(key);
      if (child === undefined) {
        const method = request.method;
        child = {
          requests: this.requestTally.seriesFor(key, () => ({ method, route, status: String(status) })),
          latency: this.latency.labels(method, route),
        };
        children.set(key, child);
      }
      child.requests.pending++;
      child.latency.observe(reply.elapsedTime / 1000);
      if (status === 429) httpRejections.inc();
      done();
    });
  }
}

interface ResponseMetrics {
  requests: TallySeries;
  latency: Histogram.Internal<"method" | "route">;
}

/** By `kind`, not `instanceof`: a SQLite node never loads the PostgreSQL modules. */
function isPostgres(storage: Storage): storage is PostgresStorage {
  return storage.kind === "postgres";
}
