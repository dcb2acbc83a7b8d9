import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { after, describe, test } from "node:test";
import type { Redis } from "ioredis";
import type { ChangeEvent } from "../../src/lib/change-feed.ts";
import { RedisChangeFeed } from "../../src/storage/redis/redis-change-feed.ts";
import { createRedisClient } from "../../src/storage/redis/redis-client.ts";
import { backends } from "../support/backends.ts";

const enabled = backends().some((b) => b.name === "postgres");
const URL = "redis://127.0.0.1:6379";

/**
 * The feed that tells other nodes a key changed. `openRuntime` makes the Redis clients,
 * then awaits the store's namespace (a PostgreSQL query) before it builds the feed: Redis on
 * a local network is ready by then, and a feed that subscribed only on the `ready` event
 * never subscribed at all. Every node then forgot a changed caller key only when its cache
 * entry expired (a second), never through the feed.
 */
describe("the Redis change feed", { skip: !enabled }, () => {
  const clients: Redis[] = [];
  after(() => {
    for (const client of clients) client.disconnect();
  });
  const client = (name: string) => {
    const made = createRedisClient(URL, { name });
    clients.push(made);
    return made;
  };
  const ready = async (redis: Redis) => {
    if (redis.status !== "ready") await once(redis, "ready");
  };

  test("hears other nodes when its subscriber was connected before the feed was made", async () => {
    const namespace = `gatehouse:test-${randomBytes(6).toString("hex")}`;
    const [publisher, subscriber] = [client("commands"), client("subscriber")];
    await Promise.all([ready(publisher), ready(subscriber)]);
    const heard: ChangeEvent[] = [];
    const listening = new RedisChangeFeed(publisher, subscriber, namespace);
    listening.subscribe((event) => heard.push(event));

    const other = client("other");
    await ready(other);
    const speaking = new RedisChangeFeed(other, client("other-subscriber"), namespace);
    // Published until heard (or 2 s): a subscription is confirmed asynchronously.
    for (let i = 0; i < 40 && !heard.some((e) => e.kind === "changed"); i++) {
      speaking.publish("key", "key_changed_elsewhere");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(
      heard.find((e) => e.kind === "changed"),
      { kind: "changed", topic: "key", id: "key_changed_elsewhere" },
      "a change published by another node reaches this one",
    );
  });
});
