import { Redis } from "ioredis";

/**
 * ioredis with the offline queue off: while Redis is away, commands fail at once instead
 * of piling up, so callers fall back (per-node limits) rather than hang. Reconnection is
 * ioredis's own, with a capped backoff.
 */
export function createRedisClient(url: string, options: { name: string }): Redis {
  const client = new Redis(url, {
    connectionName: `gatehouse-${options.name}`,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2000,
    commandTimeout: 1000,
    retryStrategy: (attempt) => Math.min(100 * attempt, 2000),
    lazyConnect: false,
  });
  // Connection errors surface as events; without a listener they would crash the process.
  client.on("error", () => {});
  return client;
}
