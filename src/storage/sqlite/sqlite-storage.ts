import { statSync } from "node:fs";
import type { Storage } from "../types.ts";
import { SqliteAuditRepository } from "./audit-repository.ts";
import { SqliteDatabase } from "./database.ts";
import { SqliteHousekeepingRepository } from "./housekeeping-repository.ts";
import { SqliteKeyRepository } from "./key-repository.ts";
import { SqliteMetaRepository } from "./meta-repository.ts";
import { migrateSqlite } from "./migrations.ts";
import { SqliteSessionRepository } from "./session-repository.ts";
import { SqliteSigningKeyRepository } from "./signing-key-repository.ts";
import { SqliteTokenRepository } from "./token-repository.ts";
import { SqliteUsageRepository } from "./usage-repository.ts";
import { SqliteUserRepository } from "./user-repository.ts";
import { WalCheckpointer } from "./wal-checkpointer.ts";

export class SqliteStorage implements Storage {
  readonly kind = "sqlite" as const;
  readonly database: SqliteDatabase;
  readonly keys: SqliteKeyRepository;
  readonly housekeeping: SqliteHousekeepingRepository;
  readonly audit: SqliteAuditRepository;
  readonly usage: SqliteUsageRepository;
  readonly meta: SqliteMetaRepository;
  readonly users: SqliteUserRepository;
  readonly signingKeys: SqliteSigningKeyRepository;
  readonly tokens: SqliteTokenRepository;
  readonly sessions: SqliteSessionRepository;
  private readonly checkpointer: WalCheckpointer | null;
  /** The file opened, to tell when its path no longer names it; null in memory. */
  private readonly file: { path: string; dev: number; ino: number } | null;

  private constructor(database: SqliteDatabase, checkpointer: WalCheckpointer | null, path: string) {
    this.database = database;
    this.checkpointer = checkpointer;
    const stat = path === ":memory:" ? undefined : statSync(path, { throwIfNoEntry: false });
    this.file = stat ? { path, dev: stat.dev, ino: stat.ino } : null;
    this.keys = new SqliteKeyRepository(database);
    this.housekeeping = new SqliteHousekeepingRepository(database);
    this.audit = new SqliteAuditRepository(database);
    this.usage = new SqliteUsageRepository(database);
    this.meta = new SqliteMetaRepository(database);
    this.users = new SqliteUserRepository(database);
    this.signingKeys = new SqliteSigningKeyRepository(database);
    this.tokens = new SqliteTokenRepository(database);
    this.sessions = new SqliteSessionRepository(database);
  }

  /** Opens (creating if needed) the database file and applies pending migrations. */
  static open(path: string): SqliteStorage {
    const database = new SqliteDatabase(path);
    try {
      migrateSqlite(database);
    } catch (error) {
      database.close();
      throw error;
    }
    // WAL checkpoints (and their fsyncs) run on a worker thread, not on the event loop.
    return new SqliteStorage(database, path === ":memory:" ? null : new WalCheckpointer(database, path), path);
  }

  async ping(): Promise<void> {
    this.database.statement("SELECT 1").get();
    // A data directory deleted (or a file moved over the database) under a running server
    // leaves it writing to a file no path names: every write it acknowledges is gone at the
    // next start. Readiness is where an operator's probes look, so it fails here.
    if (this.file === null) return;
    const now = statSync(this.file.path, { throwIfNoEntry: false });
    if (now === undefined || now.ino !== this.file.ino || now.dev !== this.file.dev) {
      throw new Error(
        `${this.file.path} was deleted or replaced while this server had it open: what it writes now is lost when it stops`,
      );
    }
  }

  async close(): Promise<void> {
    await this.checkpointer?.stop();
    this.database.close();
  }
}
