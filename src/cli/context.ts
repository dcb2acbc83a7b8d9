import { existsSync } from "node:fs";
import { join } from "node:path";
import { ConfigError, type GatehouseConfig, loadConfig } from "../config/config.ts";
import { createGatehouse, type Gatehouse } from "../gatehouse.ts";
import { openRuntime } from "../runtime.ts";
import type { CliIO } from "./command.ts";

/**
 * Loads configuration, printing every problem, or returns null. Only `serve` checks the
 * listening settings (`serving`); other commands ignore them. A command that opens no
 * store (`usingStore: false`) ignores the data folder's.
 */
export function configOrReport(
  io: CliIO,
  options: { serving?: boolean; usingStore?: boolean } = {},
): GatehouseConfig | null {
  try {
    const config = loadConfig(io.env, { serving: options.serving ?? false, usingStore: options.usingStore ?? true });
    for (const warning of config.warnings) io.err(`warning: ${warning}`);
    return config;
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(error.message);
      return null;
    }
    throw error;
  }
}

/** The meta entry `init` writes; a store without it was never initialised. */
export const INITIALISED = "initialised_at";

/** Where the CLI's store is, in words an operator can check. */
export function describeStore(config: GatehouseConfig): string {
  if (config.databaseUrl) {
    // A socket URL (`postgres://u@/db?host=/var/run/postgresql`) has no host to show.
    const url = URL.parse(config.databaseUrl);
    return url === null
      ? "PostgreSQL (GATEHOUSE_DATABASE_URL)"
      : `PostgreSQL ${url.host || "(local socket)"}${url.pathname}`;
  }
  return `SQLite ${join(config.dataDir, "gatehouse.db")}`;
}

/**
 * A Gatehouse for one CLI command: no timers; buffered events are flushed on close.
 * Only `init` may create a store (`create`): any other command run from the wrong
 * directory would otherwise work on a new, empty store and report nonsense.
 */
export async function withGatehouse(
  io: CliIO,
  work: (gatehouse: Gatehouse) => Promise<number>,
  options: {
    create?: boolean;
    /** Appended to the message for a missing store: what else the command can do. */
    withoutStore?: string;
  } = {},
): Promise<number> {
  const config = configOrReport(io);
  if (!config) return 1;
  const missing = `No initialised Gatehouse store at ${describeStore(config)}. Run \`gatehouse init\` first, or point GATEHOUSE_DATA_DIR (or GATEHOUSE_DATABASE_URL) at your store.${options.withoutStore ? ` ${options.withoutStore}` : ""}`;
  if (!options.create && !config.databaseUrl && !existsSync(join(config.dataDir, "gatehouse.db"))) {
    io.err(missing);
    return 1;
  }
  // Through the runtime, so a revocation from the CLI reaches every node's caches too.
  const runtime = await openRuntime(config);
  const gatehouse = createGatehouse({
    config,
    storage: runtime.storage,
    changes: runtime.changes,
    limiterFactory: runtime.limiterFactory,
    onStop: runtime.close,
    background: false,
  });
  try {
    if (!options.create && (await gatehouse.storage.meta.get(INITIALISED)) === null) {
      io.err(missing);
      return 1;
    }
    return await work(gatehouse);
  } finally {
    await gatehouse.stop();
  }
}
