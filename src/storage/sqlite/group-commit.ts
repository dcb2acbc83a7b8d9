import type { SqliteDatabase } from "./database.ts";

interface Unit {
  work: () => unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
}

export interface GroupCommitOptions {
  /** Units committed together at most: bounds how long one commit holds the event loop. */
  maxBatch?: number;
  /** How long the first unit of a batch may wait for others while more keep arriving. */
  maxWaitMs?: number;
}

/**
 * Group commit on SQLite's one connection: units of work that arrive close together share
 * one write transaction, which is most of what a small write costs (the commit writes
 * every dirty page to the WAL, and every 1,000 pages a checkpoint copies them back with an
 * fsync; pages several units touch, such as the ends of append-only indexes, are written
 * once per batch instead of once per unit).
 *
 * Each unit runs in its own savepoint, so one that throws is undone alone and rejects its
 * own promise; the others commit. A promise settles only after the commit, so a caller
 * that answers once it resolves is as durable as with one transaction per unit. When the
 * commit itself fails, every unit of the batch is rejected and nothing of it is written.
 *
 * Batching is adaptive. The flush waits for the next turn of the event loop (a
 * `setImmediate`) and waits again for as long as new units keep arriving, up to
 * `maxWaitMs` after the first one or `maxBatch` units: alone, a unit waits one turn;
 * under load, batches grow with the load.
 */
export class GroupCommit {
  private readonly database: SqliteDatabase;
  private readonly maxBatch: number;
  private readonly maxWaitMs: number;
  private pending: Unit[] = [];
  private scheduled = false;
  private firstAt = 0;
  private seen = 0;

  constructor(database: SqliteDatabase, options: GroupCommitOptions = {}) {
    this.database = database;
    this.maxBatch = options.maxBatch ?? 256;
    this.maxWaitMs = options.maxWaitMs ?? 2;
  }

  /** Runs `work` (synchronous, statements on this connection only) in the next group commit. */
  run<T>(work: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ work, resolve: resolve as (value: unknown) => void, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        this.firstAt = performance.now();
        this.seen = 0;
        setImmediate(this.tick);
      }
    });
  }

  private readonly tick = (): void => {
    const count = this.pending.length;
    if (count < this.maxBatch && count > this.seen && performance.now() - this.firstAt < this.maxWaitMs) {
      this.seen = count;
      setImmediate(this.tick);
      return;
    }
    this.scheduled = false;
    while (this.pending.length > 0) this.commit(this.pending.splice(0, this.maxBatch));
  };

  private commit(batch: Unit[]): void {
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    const savepoint = this.database.statement("SAVEPOINT unit");
    const release = this.database.statement("RELEASE unit");
    const rollback = this.database.statement("ROLLBACK TO unit");
    try {
      this.database.transaction(() => {
        for (const unit of batch) {
          savepoint.run();
          try {
            outcomes.push({ ok: true, value: unit.work() });
          } catch (error) {
            rollback.run();
            outcomes.push({ ok: false, error });
          }
          release.run();
        }
      });
    } catch (error) {
      for (const unit of batch) unit.reject(error);
      return;
    }
    batch.forEach((unit, i) => {
      const outcome = outcomes[i];
      if (outcome?.ok) unit.resolve(outcome.value);
      else unit.reject(outcome ? outcome.error : new Error("group commit lost a unit"));
    });
  }
}
