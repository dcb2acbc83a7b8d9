import type { Logger } from "pino";
import { AuditLog } from "./audit/audit-log.ts";
import type { GatehouseConfig } from "./config/config.ts";
import type { RandomBytes } from "./keys/key-format.ts";
import { KeyService } from "./keys/key-service.ts";
import { KeyVerifier } from "./keys/key-verifier.ts";
import { type Clock, systemClock } from "./lib/clock.ts";
import { KeyRateLimiter, type LimiterFactory } from "./ratelimit/key-rate-limiter.ts";
import type { Storage } from "./storage/types.ts";
import { UsageRecorder } from "./usage/usage-recorder.ts";

/** Everything a running Gatehouse is made of, wired once; HTTP and the CLI both use it. */
export interface Gatehouse {
  config: GatehouseConfig;
  storage: Storage;
  clock: Clock;
  keys: KeyService;
  verifier: KeyVerifier;
  limiter: KeyRateLimiter;
  usage: UsageRecorder;
  audit: AuditLog;
  /** Flushes buffered usage and audit events, then closes storage. */
  stop(): Promise<void>;
}

export function createGatehouse(options: {
  config: GatehouseConfig;
  storage: Storage;
  clock?: Clock;
  randomBytes?: RandomBytes;
  limiterFactory?: LimiterFactory;
  log?: Logger;
  /** Set false for one-shot CLI commands: no timers, flush on stop only. */
  background?: boolean;
}): Gatehouse {
  const { config, storage } = options;
  const clock = options.clock ?? systemClock;
  const background = options.background ?? true;
  const usage = new UsageRecorder(storage, {
    intervalMs: background ? config.usageFlushMs : 0,
    ...(options.log ? { log: options.log } : {}),
  });
  const audit = new AuditLog(storage, {
    intervalMs: background ? 250 : 0,
    ...(options.log ? { log: options.log } : {}),
  });
  const limiter = new KeyRateLimiter({
    now: clock,
    ...(options.limiterFactory ? { factory: options.limiterFactory } : {}),
  });
  const keys = new KeyService({
    storage,
    policy: config.keys,
    clock,
    ...(options.randomBytes ? { randomBytes: options.randomBytes } : {}),
  });
  const verifier = new KeyVerifier({ storage, policy: config.keys, clock, limiter, usage, audit });
  let stopped: Promise<void> | undefined;
  return {
    config,
    storage,
    clock,
    keys,
    verifier,
    limiter,
    usage,
    audit,
    stop() {
      stopped ??= (async () => {
        await usage.stop();
        await audit.stop();
        await storage.close();
      })();
      return stopped;
    },
  };
}
