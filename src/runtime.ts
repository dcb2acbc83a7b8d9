import { randomBytes } from "node:crypto";
import type { GatehouseConfig } from "./config/config.ts";
import { type ChangeFeed, LocalChangeFeed } from "./lib/change-feed.ts";
import type { LimiterFactory } from "./ratelimit/key-rate-limiter.ts";
import { openStorage } from "./storage/open-storage.ts";
import type { Storage } from "./storage/types.ts";

/** The stateful parts a node connects to, chosen by configuration. */
export interface Runtime {
  storage: Storage;
  changes: ChangeFeed;
  /** Undefined: per-node in-memory limits. */
  limiterFactory: LimiterFactory | undefined;
  /** Closes Redis connections (storage is closed by Gatehouse.stop). */
  close(): Promise<void>;
  /**
   * Without Redis, null. With it, whether it answers (its connection is ready) within
   * `withinMs`: ioredis connects in the background and never says so by itself, so a
   * node pointed at a Redis that is down started without a word.
   */
  redisAnswers(withinMs: number): Promise<boolean | null>;
}

/** A Redis URL fit for logs: its password left out. */
export function redisUrlForLogs(redisUrl: string): string {
  try {
    const url = new URL(redisUrl);
    url.password = "";
    return url.toString();
  } catch {
    return "(GATEHOUSE_REDIS_URL)";
  }
}

export async function openRuntime(config: GatehouseConfig): Promise<Runtime> {
  const storage = await openStorage(config);
  if (!config.redisUrl) {
    return {
      storage,
      changes: new LocalChangeFeed(),
      limiterFactory: undefined,
      close: async () => {},
      redisAnswers: async () => null,
    };
  }
  // Imported only when Redis is configured: ioredis alone is ~7 MB of heap on a node without it.
  const [{ RedisChangeFeed }, { createRedisClient }, { redisLimiterFactory }] = await Promise.all([
    import("./storage/redis/redis-change-feed.ts"),
    import("./storage/redis/redis-client.ts"),
    import("./storage/redis/redis-rate-limiter.ts"),
  ]);
  const commands = createRedisClient(config.redisUrl, { name: "commands", autoPipelining: true });
  const subscriber = createRedisClient(config.redisUrl, { name: "subscriber" });
  const namespace = await redisNamespace(storage);
  const changes = new RedisChangeFeed(commands, subscriber, namespace);
  return {
    storage,
    changes,
    limiterFactory: redisLimiterFactory(commands, { failClosed: config.rateLimitFailClosed, namespace }),
    async close() {
      await changes.close();
      commands.disconnect();
      subscriber.disconnect();
    },
    redisAnswers(withinMs) {
      if (commands.status === "ready") return Promise.resolve(true);
      return new Promise((resolve) => {
        const ready = () => {
          clearTimeout(timer);
          resolve(true);
        };
        const timer = setTimeout(() => {
          commands.off("ready", ready);
          resolve(false);
        }, withinMs);
        // Never what keeps a process alive: a command that failed meanwhile exits at once.
        timer.unref();
        commands.once("ready", ready);
      });
    },
  };
}

/**
 * The prefix of this store's keys and channel in Redis: `gatehouse:` and an id the store
 * is given the first time a node opens it with Redis (claimed atomically, so nodes starting
 * together agree). Two stores sharing one Redis (staging and production, or every test
 * database on a developer's machine) otherwise shared their brakes and rate limits: one
 * store's failed sign-ins blocked an address on the other.
 */
export async function redisNamespace(storage: Storage): Promise<string> {
  const id = await storage.meta.claim("redis_namespace", randomBytes(9).toString("base64url"));
  return `gatehouse:${id}`;
}
