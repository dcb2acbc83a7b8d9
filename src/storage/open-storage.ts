import { join } from "node:path";
import type { GatehouseConfig } from "../config/config.ts";
import type { Storage } from "./types.ts";

/**
 * The store named by the configuration could not be opened at start: the operator's to
 * fix (a database not created, a server not running, a wrong password), said in one line
 * that names the setting, not as a driver's stack trace.
 */
export class StorageOpenError extends Error {
  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.name = "StorageOpenError";
  }
}

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
    try {
      return await PostgresStorage.open(config.databaseUrl);
    } catch (error) {
      throw new StorageOpenError(
        `cannot use the PostgreSQL database of GATEHOUSE_DATABASE_URL (${shownUrl(config.databaseUrl)}): ${whyNot(error)}`,
        { cause: error },
      );
    }
  }
  const { SqliteStorage } = await import("./sqlite/sqlite-storage.ts");
  const file = join(config.dataDir, "gatehouse.db");
  try {
    return SqliteStorage.open(file);
  } catch (error) {
    throw new StorageOpenError(
      `cannot open the SQLite store ${file} (GATEHOUSE_DATA_DIR): ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/**
 * The URL without its password, for a message: the one after the user name, and the
 * `password` (or `sslpassword`) query parameter, which the driver takes as well.
 */
function shownUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "****";
    for (const name of [...parsed.searchParams.keys()]) {
      if (/password/i.test(name)) parsed.searchParams.set(name, "****");
    }
    return parsed.toString();
  } catch {
    return "not a URL";
  }
}

/** What went wrong, in the terms of what to do about it (the driver's words otherwise). */
function whyNot(error: unknown): string {
  const cause = (error as { cause?: unknown }).cause ?? error;
  const code = (cause as { code?: unknown }).code;
  const message = cause instanceof Error ? cause.message : String(cause);
  // A connection that could not be made: AggregateError (IPv4 and IPv6 tried) has no message.
  const errors = (cause as { errors?: unknown }).errors;
  const first = Array.isArray(errors) ? (errors[0] as { code?: unknown; message?: unknown }) : null;
  const connectCode = typeof code === "string" ? code : typeof first?.code === "string" ? first.code : undefined;
  switch (connectCode) {
    case "ECONNREFUSED":
      return "nothing answers at that host and port; is PostgreSQL running there?";
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return "that host name does not resolve";
    case "3D000":
      return `${message}; create it first (e.g. \`createdb\`), then start again`;
    case "28P01":
    case "28000":
      return `${message}; check the user and password in the URL`;
    default:
      return message || String(connectCode ?? "unknown error");
  }
}
