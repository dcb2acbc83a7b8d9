import { ConfigError, type GatehouseConfig, loadConfig } from "../config/config.ts";
import { createGatehouse, type Gatehouse } from "../gatehouse.ts";
import { openRuntime } from "../runtime.ts";
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
    return await work(gatehouse);
  } finally {
    await gatehouse.stop();
  }
}
