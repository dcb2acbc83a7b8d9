/**
 * Tells every node that something changed (a key revoked, a token family ended), so a
 * node that caches anything drops it. In one process it is a plain in-memory fan-out;
 * with Redis it is a pub/sub channel (storage/redis/redis-change-feed.ts).
 *
 * `reset` events mean "the feed itself may have missed messages" (Redis reconnected):
 * subscribers must drop everything they cache.
 */
export type ChangeEvent = { kind: "changed"; topic: string; id: string } | { kind: "reset" };

export interface ChangeFeed {
  publish(topic: string, id: string): void;
  /**
   * Whether this node hears other nodes' changes now. While it does not (Redis away), a
   * cache that relies on the feed must not fill: nothing would tell it of a change.
   */
  hearing(): boolean;
  subscribe(listener: (event: ChangeEvent) => void): () => void;
  close(): Promise<void>;
}

export class LocalChangeFeed implements ChangeFeed {
  private readonly listeners = new Set<(event: ChangeEvent) => void>();

  publish(topic: string, id: string): void {
    this.emit({ kind: "changed", topic, id });
  }

  /** One process: it hears every change there is. */
  hearing(): boolean {
    return true;
  }

  /** Delivers to this process's listeners; the Redis feed reuses it for inbound messages. */
  emit(event: ChangeEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  subscribe(listener: (event: ChangeEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
