import type { Redis } from "ioredis";
import { type ChangeEvent, type ChangeFeed, LocalChangeFeed } from "../../lib/change-feed.ts";

/**
 * Change notifications across nodes over Redis pub/sub. Pub/sub delivers at most once
 * and only while connected, so after any reconnection subscribers get a `reset` and
 * drop their caches: a missed message can never keep a revoked credential alive.
 */
export class RedisChangeFeed implements ChangeFeed {
  private readonly local = new LocalChangeFeed();
  private readonly publisher: Redis;
  private readonly channel: string;
  private wasConnected = false;
  private readonly subscriber: Redis;

  /** `namespace`: this store's prefix in Redis (`redisNamespace`), so stores sharing a Redis do not hear each other. */
  constructor(publisher: Redis, subscriber: Redis, namespace = "gatehouse") {
    this.publisher = publisher;
    this.subscriber = subscriber;
    this.channel = `${namespace}:changes`;
    subscriber.on("message", (_channel: string, message: string) => {
      const separator = message.indexOf("\u0000");
      if (separator < 0) return;
      this.local.emit({ kind: "changed", topic: message.slice(0, separator), id: message.slice(separator + 1) });
    });
    subscriber.on("ready", () => {
      void subscriber.subscribe(this.channel).catch(() => {});
      if (this.wasConnected) this.local.emit({ kind: "reset" });
      this.wasConnected = true;
    });
    // The clients connect as soon as they are made, and the runtime awaits the store's
    // namespace (a database query) before making the feed: a Redis nearby is ready by
    // then, its `ready` event already gone, and a feed that subscribed only on that event
    // never subscribed at all (every node then forgot a changed caller key only when its
    // cache entry expired).
    if (subscriber.status === "ready") {
      void subscriber.subscribe(this.channel).catch(() => {});
      this.wasConnected = true;
    }
    subscriber.on("close", () => this.local.emit({ kind: "reset" }));
  }

  publish(topic: string, id: string): void {
    // Local listeners hear it at once; other nodes through Redis.
    this.local.publish(topic, id);
    this.publisher.publish(this.channel, `${topic}\u0000${id}`).catch(() => {});
  }

  hearing(): boolean {
    return this.subscriber.status === "ready";
  }

  subscribe(listener: (event: ChangeEvent) => void): () => void {
    return this.local.subscribe(listener);
  }

  async close(): Promise<void> {
    await this.local.close();
  }
}
