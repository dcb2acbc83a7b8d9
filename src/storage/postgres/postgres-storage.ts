import type { Storage } from "../types.ts";
import { PostgresAuditRepository } from "./audit-repository.ts";
import { PostgresDatabase } from "./database.ts";
import { PostgresHousekeepingRepository } from "./housekeeping-repository.ts";
import { PostgresKeyRepository } from "./key-repository.ts";
import { PostgresMetaRepository } from "./meta-repository.ts";
import { migratePostgres } from "./migrations.ts";
import { PostgresSessionRepository } from "./session-repository.ts";
import { PostgresSigningKeyRepository } from "./signing-key-repository.ts";
import { PostgresTokenRepository } from "./token-repository.ts";
import { PostgresUsageRepository } from "./usage-repository.ts";
import { PostgresUserRepository } from "./user-repository.ts";

export class PostgresStorage implements Storage {
  readonly kind = "postgres" as const;
  readonly database: PostgresDatabase;
  readonly keys: PostgresKeyRepository;
  readonly housekeeping: PostgresHousekeepingRepository;
  readonly audit: PostgresAuditRepository;
  readonly usage: PostgresUsageRepository;
  readonly meta: PostgresMetaRepository;
  readonly users: PostgresUserRepository;
  readonly signingKeys: PostgresSigningKeyRepository;
  readonly tokens: PostgresTokenRepository;
  readonly sessions: PostgresSessionRepository;

  private constructor(database: PostgresDatabase) {
    this.database = database;
    this.keys = new PostgresKeyRepository(database);
    this.housekeeping = new PostgresHousekeepingRepository(database);
    this.audit = new PostgresAuditRepository(database);
    this.usage = new PostgresUsageRepository(database);
    this.meta = new PostgresMetaRepository(database);
    this.users = new PostgresUserRepository(database);
    this.signingKeys = new PostgresSigningKeyRepository(database);
    this.tokens = new PostgresTokenRepository(database);
    this.sessions = new PostgresSessionRepository(database);
  }

  /** Connects and applies pending migrations (safe when several nodes start at once). */
  static async open(url: string, options: { schema?: string; poolSize?: number } = {}): Promise<PostgresStorage> {
    const database = new PostgresDatabase(url, {
      ...(options.schema ? { schema: options.schema } : {}),
      ...(options.poolSize ? { max: options.poolSize } : {}),
    });
    try {
      await migratePostgres(database);
    } catch (error) {
      await database.close();
      throw error;
    }
    return new PostgresStorage(database);
  }

  async ping(): Promise<void> {
    await this.database.query("SELECT 1");
  }

  async close(): Promise<void> {
    await this.database.close();
  }
}
