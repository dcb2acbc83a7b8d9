import { createGatehouse } from "../../gatehouse.ts";
import { buildApp, createLogger, REQUEST_TIMEOUT_MS } from "../../http/app.ts";
import { lowerThreadPoolPriority } from "../../lib/thread-pool-priority.ts";
import { keepTickObjectShape } from "../../lib/tick-shape.ts";
import { settleLog } from "../../observability/log-destination.ts";
import { openRuntime, redisUrlForLogs } from "../../runtime.ts";
import type { Command } from "../command.ts";
import { configOrReport, INITIALISED } from "../context.ts";

/** How long `serve` waits for Redis to answer before warning that it does not. */
const REDIS_WAIT_MS = 2000;

/** A shutdown ends by then: in-flight requests have answered or been cut, and 10 s more. */
const SHUTDOWN_DEADLINE_MS = REQUEST_TIMEOUT_MS + 10_000;

/** A signal this soon after the first is the same request to stop, delivered twice. */
const REPEAT_SIGNAL_MS = 2000;

/** Logging must not stop a shutdown (a closed log pipe, a full disk). */
function say(line: () => void): void {
  try {
    line();
  } catch {
    // Nothing else can be told; the exit code still says how it went.
  }
}

export const serveCommand: Command = {
  name: "serve",
  summary: "Run the Gatehouse server (configured by GATEHOUSE_* environment variables).",
  usage: "serve",
  options: {},
  async run(_args, io) {
    const config = configOrReport(io, { serving: true });
    if (!config) return 1;
    let releaseLock = () => {};
    if (config.databaseUrl === null) {
      // Imported here: a PostgreSQL node has no use for node:sqlite.
      const { lockDataDir } = await import("../../storage/sqlite/serve-lock.ts");
      let release: (() => void) | null;
      try {
        release = lockDataDir(config.dataDir);
      } catch (error) {
        io.err(`gatehouse serve: cannot start: cannot use ${config.dataDir}: ${(error as Error).message}`);
        return 1;
      }
      if (release === null) {
        io.err(
          `gatehouse serve: cannot start: another gatehouse serve is running on ${config.dataDir}. The embedded store is served by one process (rate limits and sign-in brakes are counted in it, so two would each allow the whole limit): stop the other one, or use GATEHOUSE_DATABASE_URL to run several nodes.`,
        );
        return 1;
      }
      releaseLock = release;
    }
    const runtime = await openRuntime(config);
    const { storage } = runtime;
    // Asked now, answered by the time the node is listening (or after REDIS_WAIT_MS).
    const redisAnswering = runtime.redisAnswers(REDIS_WAIT_MS);
    // One logger for the requests and for what runs beside them (audit and usage writes,
    // housekeeping), whose failures were otherwise silent.
    const log = createLogger(config);
    const gatehouse = createGatehouse({
      config,
      storage,
      log,
      changes: runtime.changes,
      limiterFactory: runtime.limiterFactory,
      onStop: runtime.close,
    });
    // Load (or create) the signing keys before listening: a missing or wrong master key
    // must stop the server at start, not fail the first sign-in.
    try {
      await gatehouse.start();
    } catch (error) {
      io.err(`gatehouse serve: cannot start: the API keys cannot be loaded: ${(error as Error).message}`);
      await gatehouse.stop();
      releaseLock();
      return 1;
    }
    try {
      await gatehouse.keyring.start();
    } catch (error) {
      io.err(`gatehouse serve: cannot start: the signing keys cannot be loaded: ${(error as Error).message}`);
      await gatehouse.stop();
      releaseLock();
      return 1;
    }
    let app: ReturnType<typeof buildApp>;
    try {
      app = buildApp(gatehouse, { logger: log });
    } catch (error) {
      // The TLS certificate and key are read here; a file that is not PEM is an operator
      // mistake to report in one line.
      io.err(`gatehouse serve: cannot start: the TLS certificate or key is not usable: ${(error as Error).message}`);
      await gatehouse.stop();
      releaseLock();
      return 1;
    }
    let closingSince: number | null = null;
    /** Leaves at once, giving the log a moment (it is written in the background). */
    const exit = (code: number) => void settleLog(500).finally(() => process.exit(code));
    const shutdown = async (signal: string) => {
      if (closingSince !== null) {
        // One Ctrl-C under `npm start` arrives twice (from the terminal and forwarded by
        // npm, ms apart), and so does a supervisor's SIGTERM sent to npm and node alike:
        // a repeat that soon is the same request to stop.
        if (performance.now() - closingSince < REPEAT_SIGNAL_MS) return;
        // A later one (Ctrl-C again, a supervisor that lost patience): stop waiting.
        say(() =>
          app.log.error({ signal }, "second signal while shutting down: exiting now; buffered data may be lost"),
        );
        exit(1);
        return;
      }
      // A monotonic clock: a wall clock stepped back (NTP) would ignore every later signal.
      closingSince = performance.now();
      // However the steps below go (a log stream that fails, a flush that hangs), the
      // process ends: by then every request has answered or timed out, and the flush has
      // had 10 s. A process that stays up with its port closed looks alive to a supervisor.
      setTimeout(() => {
        say(() => app.log.error({ signal }, "shutdown did not finish in time: exiting; buffered data may be lost"));
        exit(1);
      }, SHUTDOWN_DEADLINE_MS);
      let code = 1;
      try {
        say(() => app.log.info({ signal }, "shutting down: no new connections, finishing in-flight requests"));
        // app.close() stops accepting and waits for in-flight requests, then we flush
        // buffers. Node stops timing requests out once its server is closing, so a request
        // whose body never comes (a stalled client, a slowloris) held the shutdown for ever:
        // past the request timeout, whatever is still open is cut.
        const cut = setTimeout(() => app.server.closeAllConnections(), REQUEST_TIMEOUT_MS);
        await app.close();
        clearTimeout(cut);
        // Exit 1 when buffered usage counts or audit events could not be written (each
        // logged as an error): exit 0 would tell the supervisor nothing was lost.
        const written = await gatehouse.stop().catch((error: unknown) => {
          say(() => app.log.error({ err: error }, "stopping failed"));
          return false;
        });
        releaseLock();
        say(() => app.log.info(written ? "stopped" : "stopped; buffered usage or audit events were lost (see above)"));
        code = written ? 0 : 1;
      } finally {
        await settleLog();
        process.exit(code);
      }
    };
    process.on("SIGTERM", () => void shutdown("SIGTERM"));
    process.on("SIGINT", () => void shutdown("SIGINT"));
    keepTickObjectShape();
    try {
      await app.listen({ port: config.port, host: config.host });
    } catch (error) {
      const inUse = (error as { code?: unknown }).code === "EADDRINUSE";
      io.err(
        `gatehouse serve: cannot listen on ${config.host}:${config.port}: ${(error as Error).message}${inUse ? ". Stop the process that holds it, or choose another port with GATEHOUSE_PORT" : ""}`,
      );
      await gatehouse.stop();
      releaseLock();
      return 1;
    }
    // Hashing and signing on libuv's pool yield to the event loop (src/lib/thread-pool-priority.ts).
    const lowered = await lowerThreadPoolPriority(config.threadPoolNice);
    const redis = await redisAnswering;
    if (redis === false && config.redisUrl !== null) {
      // The node works without it, but not as configured: say so where the operator looks.
      const fallback = config.rateLimitFailClosed
        ? "requests that need a rate limit are refused with 503 (GATEHOUSE_RATE_LIMIT_FAIL_CLOSED)"
        : "rate limits are counted on each node alone, so each node allows the whole limit";
      app.log.warn(
        { redis: redisUrlForLogs(config.redisUrl) },
        `Redis at ${redisUrlForLogs(config.redisUrl)} did not answer within ${REDIS_WAIT_MS / 1000} s (GATEHOUSE_REDIS_URL): until it does, ${fallback}. The node keeps trying to connect.`,
      );
    }
    app.log.info(
      {
        issuer: config.issuer,
        storage: storage.kind,
        redis: config.redisUrl !== null,
        ...(redis === null ? {} : { redisAnswering: redis }),
        // The SQLite store's directory; a PostgreSQL node keeps nothing on local disk.
        ...(config.databaseUrl === null ? { dataDir: config.dataDir } : {}),
        threadPool: { threads: lowered, nice: lowered > 0 ? config.threadPoolNice : 0 },
      },
      "Gatehouse is ready",
    );
    if (config.databaseUrl !== null && !config.issuerSet) {
      // Nodes on one database serve the same users, but each derives its own issuer from
      // its own host and port: a token's `iss` from one node is then refused by the others.
      app.log.warn(
        { issuer: config.issuer },
        `GATEHOUSE_ISSUER is not set, so this node's issuer is ${config.issuer}, made from its own host and port. On a shared PostgreSQL store, access tokens from one node fail on every node with another issuer: set GATEHOUSE_ISSUER to the same public URL on every node.`,
      );
    }
    if ((await storage.meta.get(INITIALISED)) === null) {
      // A first start: every admin route needs a key that does not exist yet.
      // Where `init` finds this store: the folder for the embedded one (its ./data), the
      // environment for PostgreSQL (run elsewhere without it, init makes a SQLite store).
      app.log.warn(
        config.databaseUrl === null
          ? "No admin key exists yet: run `npx gatehouse init --key-only` in the Gatehouse folder to create one (`--json` for JSON)."
          : "No admin key exists yet: run `npx gatehouse init --key-only` with this node's GATEHOUSE_DATABASE_URL and GATEHOUSE_MASTER_KEY set to create one (`--json` for JSON).",
      );
    }
    // Keep running until a signal arrives.
    await new Promise(() => {});
    return 0;
  },
};
