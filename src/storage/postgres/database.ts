import pg from "pg";
import { BusyError, StorageUnavailableError } from "../../errors/gatehouse-error.ts";

export type Queryable = Pick<pg.PoolClient, "query">;

/** int8 (BIGINT) arrives as a string by default; our values (ms timestamps, counts) fit a double. */
const types = {
  getTypeParser(oid: number, format?: string) {
    if (oid === 20) return (value: string) => Number.parseInt(value, 10);
    return pg.types.getTypeParser(oid, format as "text");
  },
};

/** SQLSTATE classes and socket errors that mean "the database is not there right now". */
function isUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  if (typeof code === "string") {
    // Connection, shutdown, and insufficient resources (disk full, out of memory, too many
    // clients): the database cannot take the request now, which is a 503, not our bug.
    if (code.startsWith("08") || code.startsWith("57P") || code.startsWith("53")) return true;
    // query_canceled: Gatehouse cancels nothing itself, so this is the statement timeout
    // (5 s: a lock held elsewhere, an overloaded server), which docs/deployment.md promises
    // as a 503 STORAGE_UNAVAILABLE like an unreachable database.
    if (code === "57014") return true;
    if (["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EHOSTUNREACH"].includes(code)) return true;
  }
  const message = error instanceof Error ? error.message : "";
  // "Cannot use a pool after calling end": the node is stopping, and a request its client
  // abandoned (the server no longer waits for it) reached storage after it closed.
  return /timeout exceeded when trying to connect|Connection terminated|Query read timeout|connect ECONNREFUSED|is not queryable|Cannot use a pool after calling end/i.test(
    message,
  );
}

/**
 * deadlock_detected and serialization_failure: PostgreSQL rolled the statement or the
 * transaction back whole and asks the client to run it again (its manual, "Serialization
 * Failure Handling"). Deadlocks happen between requests that lock the same rows in
 * different orders (deleting a user while one of its refresh tokens rotates); the
 * retry, after the other side has its locks, nearly always goes through.
 */
function isRetryable(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return code === "40P01" || code === "40001";
}

/** Attempts in all, and the pause before each retry (random, so two victims do not meet again). */
const ATTEMPTS = 3;
const retryPause = (attempt: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, attempt * 10 + Math.random() * 20));

/** A conflict that outlived its retries: a 503 with Retry-After, not a 500. */
function conflictBusy(error: unknown): BusyError {
  return new BusyError("Other changes to the same records were being made at the same moment.", 1, error);
}

/**
 * A pooled connection to PostgreSQL. Connections and statements have timeouts, so a
 * database that is gone makes requests fail fast (503) instead of hanging; the pool
 * reconnects by itself when the database returns.
 */
export class PostgresDatabase {
  readonly pool: pg.Pool;
  readonly schema: string;
  private readonly url: string;
  /**
   * No retry starts after a statement's timeout has passed since the first attempt: the
   * request's caller may have given up by then, and a late commit would surprise it.
   */
  private readonly retryWithinMs: number;

  constructor(
    url: string,
    options: {
      schema?: string;
      max?: number;
      /** What a request's statement may take (ms); tests lower it. */
      statementTimeoutMs?: number;
    } = {},
  ) {
    this.url = url;
    this.schema = options.schema ?? "public";
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(this.schema))
      throw new TypeError("schema must be a plain lowercase identifier");
    const statementTimeout = options.statementTimeoutMs ?? 5000;
    this.retryWithinMs = statementTimeout;
    this.pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? 10,
      connectionTimeoutMillis: 2000,
      idleTimeoutMillis: 30_000,
      statement_timeout: statementTimeout,
      // The client gives up a second after the server should have.
      query_timeout: statementTimeout + 1000,
      idle_in_transaction_session_timeout: 10_000,
      options: `-c search_path=${this.schema}`,
      types,
    });
    // An idle client losing its connection emits here; without a listener the process dies.
    this.pool.on("error", () => {});
    // The pool listens for errors only on idle clients. A connection that dies while its
    // client is checked out (the server restarted, pg_terminate_backend, a failover), or
    // in the moment between the pool handing it over and `transaction` receiving it, emits
    // 'error' on the client with no listener, which crashed the whole process. The query
    // in flight, or the next one, fails on its own (503), and `transaction` then drops the
    // client; this listener only keeps the process alive.
    this.pool.on("connect", (client) => {
      client.on("error", () => {});
    });
  }

  /** Turns "database not there" errors into StorageUnavailableError (503). */
  translate(error: unknown): unknown {
    return isUnavailable(error) ? new StorageUnavailableError(error) : error;
  }

  /** One statement on its own (autocommit); run again if PostgreSQL rolled it back for a deadlock. */
  async query<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    try {
      return await this.retrying(() => this.pool.query<R>(sql, params));
    } catch (error) {
      throw this.translate(error);
    }
  }

  /**
   * Runs `work` in one transaction on one connection; rolls back on any error. A
   * transaction PostgreSQL aborted for a deadlock is run again from the start, so `work`
   * must do nothing but statements on `client` (every caller's does).
   */
  async transaction<T>(work: (client: Queryable) => Promise<T>): Promise<T> {
    return this.retrying(() => this.transactionOnce(work));
  }

  /** `run` again while PostgreSQL rolls it back for a deadlock, within the attempts and the time. */
  private async retrying<T>(run: () => Promise<T>): Promise<T> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        return await run();
      } catch (error) {
        if (!isRetryable(error)) throw error;
        if (attempt >= ATTEMPTS || Date.now() - started >= this.retryWithinMs) throw conflictBusy(error);
        await retryPause(attempt);
      }
    }
  }

  private async transactionOnce<T>(work: (client: Queryable) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw isUnavailable(error) ? new StorageUnavailableError(error) : error;
    }
    let broken = false;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      return result;
    } catch (error) {
      try {
        await client.query("ROLLBACK");
      } catch {
        broken = true;
      }
      throw isUnavailable(error) ? new StorageUnavailableError(error) : error;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Runs `work` on a connection of its own, outside the pool and without the statement
   * and query timeouts: for schema migrations, which can run for minutes on a large store
   * (and other nodes wait that long for the migration lock). Cut by the request timeouts,
   * a long migration rolled back every time and the node could never start.
   */
  async unhurried<T>(work: (client: Queryable) => Promise<T>): Promise<T> {
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: 2000,
      options: `-c search_path=${this.schema}`,
      types,
    });
    // A connection lost between queries emits here; the query in flight fails anyway.
    client.on("error", () => {});
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => {});
      throw this.translate(error);
    }
    try {
      // Also over a default set for the role or database, which would cut it the same way.
      await client.query("SET statement_timeout = 0");
      return await work(client);
    } catch (error) {
      throw this.translate(error);
    } finally {
      await client.end().catch(() => {});
    }
  }

  private closed: Promise<void> | undefined;

  /** Idempotent: the server and its owner may both close on the way out. */
  close(): Promise<void> {
    this.closed ??= this.pool.end();
    return this.closed;
  }
}
