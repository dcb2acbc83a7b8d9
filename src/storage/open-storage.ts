import { join } from "node:path";
import type { GatehouseConfig } from "../config/config.ts";
import { SqliteStorage } from "./sqlite/sqlite-storage.ts";
import type { Storage } from "./types.ts";

/** The embedded default: one SQLite file under the data directory. */
export async function openStorage(config: GatehouseConfig): Promise<Storage> {
  return SqliteStorage.open(join(config.dataDir, "gatehouse.db"));
}
