import type { ApiKeyRecord } from "../storage/types.ts";

/**
 * The keys that call Gatehouse's own API (service and admin keys), as last read from
 * storage, by digest. A resource server sends the same key on every verification, so
 * this saves a storage read and a row decode per request. It never holds the keys being
 * verified, so verifying is no faster with 1,000 keys stored than with 1,000,000.
 *
 * Freshness: `forget` is called through the change feed when a key is revoked, rotated
 * or updated, so the next request on this node reads it again; `clear` on a feed reset.
 * Changes that reach no feed (another process writing the same SQLite file) are picked
 * up from the key change log as soon as the in-memory index applies it (KeyVerifier
 * forgets the key then), and after `ttlMs` at the latest. Expiry and revocation times are checked against the clock on every
 * hit by the caller, so a key that expires while cached stops working on time.
 */
export class CallerKeyCache {
  private readonly entries = new Map<string, { record: ApiKeyRecord; readAt: number }>();
  private readonly digestsById = new Map<string, string>();
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  /**
   * Counts every `forget` and `clear`, of keys held or not. A caller reads it before its
   * storage read and caches what it read only if it has not moved: a revocation heard
   * while the read was in flight would otherwise be undone by caching the record read
   * before it, for up to `ttlMs` (multi-node prober).
   */
  generation = 0;

  constructor(options: { maxEntries: number; ttlMs: number }) {
    this.maxEntries = options.maxEntries;
    this.ttlMs = options.ttlMs;
  }

  get(digest: string, now: number): ApiKeyRecord | null {
    const entry = this.entries.get(digest);
    if (!entry) return null;
    if (now - entry.readAt >= this.ttlMs || now < entry.readAt) {
      this.forget(entry.record.id);
      return null;
    }
    return entry.record;
  }

  set(digest: string, record: ApiKeyRecord, now: number): void {
    this.forget(record.id);
    if (this.entries.size >= this.maxEntries) {
      // Maps iterate in insertion order: drop the oldest read.
      const oldest = this.entries.values().next().value;
      if (oldest) this.forget(oldest.record.id);
    }
    this.entries.set(digest, { record, readAt: now });
    this.digestsById.set(record.id, digest);
  }

  forget(keyId: string): void {
    this.generation++;
    const digest = this.digestsById.get(keyId);
    if (digest === undefined) return;
    this.digestsById.delete(keyId);
    this.entries.delete(digest);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
    this.digestsById.clear();
  }
}
