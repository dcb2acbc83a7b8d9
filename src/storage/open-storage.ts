import { join } from "node:path";
import type { GatehouseConfig } from "../config/config.ts";
import type { Storage } from "./types.ts";

/**
 * PostgreSQL when GATEHOUSE_DATABASE_URL is set (many nodes, one database); otherwise
 * the embedded default, one SQLite file under the data directory.
 *
 * Each backend is imported only when chosen: `pg` and its repositories cost a SQLite
 * node memory (and start-up time) for nothing.
 */
export async function openStorage(config: GatehouseConfig): Promise<Storage> {
  if (config.databaseUrl) {
    const { PostgresStorage } = await import("./postgres/postgres-storage.ts");
    return PostgresStorage.open(config.databaseUrl);
  }
  const { SqliteStorage } = await import("./sqlite/sqlite-storage.ts");
  return SqliteStorage.open(join(config.dataDir, "gatehouse.db"));
}
