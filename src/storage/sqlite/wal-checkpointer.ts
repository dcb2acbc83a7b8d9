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
   * The main connection's own automatic checkpoint, kept as a backstop should the worker
   * fall behind: WAL pages since the last restart of the log.
   */
  fallbackPages?: number;
}

/**
 * Moves WAL checkpoints off the event loop. By default SQLite checkpoints on the
 * connection that commits, once the WAL holds 1,000 pages: it copies them back into the
 * database file and fsyncs both files, on the event loop, stalling every request for the
 * length of two fsyncs. Here a worker thread with its own connection does it instead
 * (PASSIVE, so it never blocks the main connection), and the main connection checkpoints
 * only if the worker falls far behind.
 *
 * Durability is unchanged: a transaction is durable (per `synchronous`) once its commit
 * is in the WAL, whoever copies it back later.
 */
export class WalCheckpointer {
  private readonly worker: Worker;
  private readonly stopFlag: Int32Array;
  private readonly exited: Promise<void>;

  constructor(database: SqliteDatabase, path: string, options: WalCheckpointerOptions = {}) {
    database.db.exec(`PRAGMA wal_autocheckpoint = ${Math.trunc(options.fallbackPages ?? 20000)}`);
    const stop = new SharedArrayBuffer(4);
    this.stopFlag = new Int32Array(stop);
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { path, stop, intervalMs: options.intervalMs ?? 50 },
      // A checkpointer needs little: keep the thread's heap small.
      resourceLimits: { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 },
    });
    // Checkpoints are an optimisation: a failing worker leaves them to the main connection.
    this.worker.on("error", () => {});
    this.exited = new Promise((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.unref();
  }

  /** Stops the worker and waits for it to close its connection. */
  stop(): Promise<void> {
    // Held open until the worker has closed its connection (it is unref'd otherwise).
    this.worker.ref();
    Atomics.store(this.stopFlag, 0, 1);
    Atomics.notify(this.stopFlag, 0);
    return this.exited;
  }
}
