import { join } from "node:path";
import type { GatehouseConfig } from "../config/config.ts";
import { PostgresStorage } from "./postgres/postgres-storage.ts";
import { SqliteStorage } from "./sqlite/sqlite-storage.ts";
import type { Storage } from "./types.ts";

/**
 * PostgreSQL when GATEHOUSE_DATABASE_URL is set (many nodes, one database); otherwise
 * the embedded default, one SQLite file under the data directory.
 */
export async function openStorage(config: GatehouseConfig): Promise<Storage> {
  if (config.databaseUrl) return PostgresStorage.open(config.databaseUrl);
  return SqliteStorage.open(join(config.dataDir, "gatehouse.db"));
}
