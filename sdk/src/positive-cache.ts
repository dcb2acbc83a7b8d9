import { createHash } from "node:crypto";
import { LruMap } from "./lru-map.ts";
import type { VerifiedKey } from "./verify-result.ts";

interface Entry {
  key: VerifiedKey;
  /** Ms since the epoch after which the entry is never used. */
  until: number;
}

/**
 * A short-lived cache of *valid* answers only, so a hot key costs one Gatehouse round trip
 * per TTL instead of one per request. Entries are keyed by the SHA-256 of the presented
 * key and the client address it came from (the key itself is never held), never outlive the key's own `expiresAt`, and the
 * least recently used entry goes first once `maxEntries` is reached.
 *
 * The price, documented in the README: a revoked key keeps working on this process for
 * up to `ttlMs`, and Gatehouse's per-key rate limit counts cache misses, not requests.
 */
export class PositiveCache {
  private readonly entries: LruMap<string, Entry>;
  private readonly ttlMs: number;
  private readonly clock: () => number;

  constructor(options: { ttlMs: number; maxEntries: number; clock: () => number }) {
    this.ttlMs = options.ttlMs;
    this.entries = new LruMap(options.maxEntries);
    this.clock = options.clock;
  }

  get size(): number {
    return this.entries.size;
  }

  get(presented: string, address: string | undefined): VerifiedKey | null {
    const id = digest(presented, address);
    const entry = this.entries.get(id);
    if (!entry) return null;
    if (this.clock() >= entry.until) {
      this.entries.delete(id);
      return null;
    }
    return entry.key;
  }

  set(presented: string, address: string | undefined, key: VerifiedKey): void {
    const now = this.clock();
    const until = Math.min(now + this.ttlMs, key.expiresAt ?? Number.POSITIVE_INFINITY);
    const id = digest(presented, address);
    if (until <= now) {
      this.entries.delete(id);
      return;
    }
    this.entries.set(id, { key, until });
  }

  delete(presented: string, address: string | undefined): void {
    this.entries.delete(digest(presented, address));
  }
}

function digest(presented: string, address: string | undefined): string {
  // A key holds no space, so the two cannot run into each other.
  return createHash("sha256")
    .update(`${presented} ${address ?? ""}`)
    .digest("base64url");
}
