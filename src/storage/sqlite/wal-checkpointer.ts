import { Worker } from "node:worker_threads";
import type { SqliteDatabase } from "./database.ts";

/**
 * The worker: its own connection to the same file, a PASSIVE checkpoint every interval
 * (and again at once while frames remain), until the shared stop flag is set. A PASSIVE
 * checkpoint never waits for readers or writers, so it never blocks the main connection.
 * Plain JavaScript, evaluated as CommonJS, so the worker loads no TypeScript.
 */
const WORKER_SOURCE = `
const { DatabaseSync } = require("node:sqlite");
const { workerData } = require("node:worker_threads");
const stop = new Int32Array(workerData.stop);
const db = new DatabaseSync(workerData.path);
db.exec("PRAGMA busy_timeout = 0; PRAGMA synchronous = NORMAL;");
const checkpoint = db.prepare("PRAGMA wal_checkpoint(PASSIVE)");
while (Atomics.wait(stop, 0, 0, workerData.intervalMs) !== "ok" && Atomics.load(stop, 0) === 0) {
  try {
    for (let pass = 0; pass < 4; pass++) {
      const result = checkpoint.get();
      if (!result || result.busy !== 0 || result.checkpointed >= result.log) break;
    }
  } catch {}
}
db.close();
`;

export interface WalCheckpointerOptions {
  /** How often the worker looks for frames to copy back. */
  intervalMs?: number;
  /**
   * The main connection's own automatic checkpoint while the worker runs, kept as a
   * backstop should the worker fall behind: WAL pages since the last restart of the log.
   */
  fallbackPages?: number;
  /**
   * The worker (a thread costs ~14 MB of RSS) starts only once the connection has changed
   * this many rows within one probe interval; until then SQLite checkpoints as usual.
   * 0 starts it at once.
   */
  startAfterChanges?: number;
  probeIntervalMs?: number;
}

/** SQLite's default automatic checkpoint, restored if the worker ends unexpectedly. */
const DEFAULT_AUTOCHECKPOINT_PAGES = 1000;

/**
 * Changed rows within one probe interval that start the worker. 100 a second is ~30
 * sign-ins or refreshes: each commits its own random B-tree pages, so the WAL reaches
 * SQLite's 1,000-page checkpoint every few seconds, and each checkpoint stalled the event
 * loop for its two fsyncs (strace during 100 sign-ins/s: 26 fsyncs in 25 s on the main
 * thread, up to 10 ms each).
 */
const DEFAULT_START_AFTER_CHANGES = 100;

/**
 * Moves WAL checkpoints off the event loop. By default SQLite checkpoints on the
 * connection that commits, once the WAL holds 1,000 pages: it copies them back into the
 * database file and fsyncs both files, on the event loop, stalling every request for the
 * length of two fsyncs. Here a worker thread with its own connection does it instead
 * (PASSIVE, so it never blocks the main connection), and the main connection checkpoints
 * only if the worker falls far behind.
 *
 * The worker starts once writes are steady (by default 100 changed rows within a second,
 * e.g. ~30 sign-ins or refresh rotations a second): a quiet store keeps SQLite's own
 * checkpoints and no extra thread. Rows of background batches (usage counts,
 * housekeeping's purges) do not count: with 1,000,000 keys verified at ~15,000 a second,
 * the usage flush writes ~15,000 rows a second, and with the worker off the verify load
 * kept the same requests/s, CPU per request and p99 (8-11 ms against 9), while the thread
 * cost 15-23 MB of RSS (`bench/memory-breakdown.ts`). What the thread protects is the
 * latency of requests that write, such as sign-ins and refreshes.
 *
 * Durability is unchanged: a transaction is durable (per `synchronous`) once its commit
 * is in the WAL, whoever copies it back later.
 */
export class WalCheckpointer {
  private readonly database: SqliteDatabase;
  private readonly path: string;
  private readonly options: WalCheckpointerOptions;
  private readonly stopFlag = new Int32Array(new SharedArrayBuffer(4));
  private worker: Worker | null = null;
  private alive = false;
  private exited: Promise<void> = Promise.resolve();
  private probe: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(database: SqliteDatabase, path: string, options: WalCheckpointerOptions = {}) {
    this.database = database;
    this.path = path;
    this.options = options;
    const threshold = options.startAfterChanges ?? DEFAULT_START_AFTER_CHANGES;
    if (threshold <= 0) {
      this.start();
      return;
    }
    let last = this.totalChanges();
    this.probe = setInterval(() => {
      if (!this.database.db.isOpen) return clearInterval(this.probe);
      const changes = this.totalChanges();
      if (changes - last >= threshold) this.start();
      last = changes;
    }, options.probeIntervalMs ?? 1000);
    this.probe.unref();
  }

  /** Whether the worker thread has been started (and not stopped). */
  get running(): boolean {
    return this.alive;
  }

  /** Rows changed by this connection, less those of background batches. */
  private totalChanges(): number {
    return this.database.totalChanges() - this.database.backgroundChanges;
  }

  private start(): void {
    clearInterval(this.probe);
    if (this.stopped || this.worker) return;
    const pages = Math.trunc(this.options.fallbackPages ?? 20000);
    this.database.db.exec(`PRAGMA wal_autocheckpoint = ${pages}`);
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path: this.path, stop: this.stopFlag.buffer, intervalMs: this.options.intervalMs ?? 50 },
      // A checkpointer needs little: keep the thread's heap small.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // Checkpoints are an optimisation: if the worker fails, the main connection takes
    // them back at SQLite's usual threshold.
    worker.on("error", () => {});
    this.exited = new Promise((resolve) =>
      worker.once("exit", () => {
        this.alive = false;
        if (!this.stopped && this.database.db.isOpen) {
          this.database.db.exec(`PRAGMA wal_autocheckpoint = ${DEFAULT_AUTOCHECKPOINT_PAGES}`);
        }
        resolve();
      }),
    );
    worker.unref();
    this.worker = worker;
    this.alive = true;
  }

  /** Stops the worker (if it started) and waits for it to close its connection. */
  stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.probe);
    if (!this.worker) return Promise.resolve();
    // Held open until the worker has closed its connection (it is unref'd otherwise).
    this.worker.ref();
    Atomics.store(this.stopFlag, 0, 1);
    Atomics.notify(this.stopFlag, 0);
    return this.exited;
  }
}
