import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";

/**
 * One connection per process. node:sqlite is synchronous, so a transaction opened and
 * committed without an `await` in between cannot interleave with another request: that
 * is what makes every repository method atomic here without a mutex.
 */
export class SqliteDatabase {
  readonly db: DatabaseSync;
  private readonly statements = new Map<string, StatementSync>();
  /**
   * Rows written by background batches (the usage counts, flushed once a second off the
   * request path, and housekeeping's purges), which the WAL checkpointer leaves out when
   * it decides whether writes are heavy enough to start its thread (wal-checkpointer.ts
   * says why).
   */
  backgroundChanges = 0;

  /** Rows changed by this connection so far, rows changed by triggers included. */
  totalChanges(): number {
    return Number(this.statement("SELECT total_changes() AS n").get()?.n ?? 0);
  }

  /** Runs `work` (synchronous) and counts every row it changed as background work. */
  background<T>(work: () => T): T {
    const before = this.totalChanges();
    try {
      return work();
    } finally {
      this.backgroundChanges += this.totalChanges() - before;
    }
  }

  constructor(path: string) {
    if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new DatabaseSync(path, { timeout: 5000 });
    // WAL lets readers run while one writer commits. synchronous=NORMAL in WAL mode keeps
    // every committed transaction across a process crash (SIGKILL); only an OS crash or
    // power loss can lose the last few. foreign_keys is off by default in SQLite.
    // A 4 MB page cache holds the B-trees' interior pages up to a few million keys; leaf
    // pages come from the OS page cache. With 1,000,000 keys a lookup cost the same CPU as
    // with 16 MB, which filled up and kept 12 MB more resident (docs/deployment.md).
    this.db.exec(`
      PRAGMA journal_mode = WAL;
      PRAGMA synchronous = NORMAL;
      PRAGMA foreign_keys = ON;
      PRAGMA cache_size = -4000;
      PRAGMA temp_store = MEMORY;
    `);
  }

  /**
   * Prepared statements are cached: preparing is most of a point query's cost. With
   * `returnArrays`, rows come back as arrays in column order, which node:sqlite builds
   * markedly faster than objects (hot-path reads use it; see docs/benchmarks.md).
   */
  statement(sql: string, options: { returnArrays?: boolean } = {}): StatementSync {
    const name = options.returnArrays ? `arrays:${sql}` : sql;
    let statement = this.statements.get(name);
    if (!statement) {
      statement = this.db.prepare(sql);
      if (options.returnArrays) statement.setReturnArrays(true);
      this.statements.set(name, statement);
    }
    return statement;
  }

  /** Runs `work` in one write transaction; `work` must be synchronous. */
  transaction<T>(work: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const result = work();
      this.db.exec("COMMIT");
      return result;
    } catch (error) {
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw error;
    }
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
