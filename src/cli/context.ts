import { ConfigError, type GatehouseConfig, loadConfig } from "../config/config.ts";
import { createGatehouse, type Gatehouse } from "../gatehouse.ts";
import { openStorage } from "../storage/open-storage.ts";
import type { CliIO } from "./command.ts";

/** Loads configuration, printing every problem, or returns null. */
export function configOrReport(io: CliIO): GatehouseConfig | null {
  try {
    return loadConfig(io.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      io.err(error.message);
      return null;
    }
    throw error;
  }
}

/** A Gatehouse for one CLI command: no timers; buffered events are flushed on close. */
export async function withGatehouse(io: CliIO, work: (gatehouse: Gatehouse) => Promise<number>): Promise<number> {
  const config = configOrReport(io);
  if (!config) return 1;
  const gatehouse = createGatehouse({ config, storage: await openStorage(config), background: false });
  try {
    return await work(gatehouse);
  } finally {
    await gatehouse.stop();
  }
}
