import { hash } from "node:crypto";
import type { VerifiedToken } from "./verified-token.ts";

/** What the revocation check last said about a token, when it is on. */
export type RevocationState =
  /** Gatehouse accepted the token; ask again from `until` (ms since the epoch). */
  | { state: "active"; until: number }
  /** Gatehouse refused it: denied at logout, sign-in revoked or user disabled. Final. */
  | { state: "revoked" };

export interface CachedToken {
  token: VerifiedToken;
  /** Null when the revocation check is off. */
  revocation: RevocationState | null;
}

/**
 * Tokens this process has already verified, so a token seen before costs a hash and a map
 * lookup instead of a signature check. Entries are keyed by the SHA-256 of the token (the
 * token itself is never held), are never served at or after the token's `exp` (no clock
 * tolerance here: tolerance is for clocks that disagree, not for extending a cache), and
 * the least recently used goes first once `maxEntries` is reached (a Map keeps insertion
 * order; a hit re-inserts). Scopes come from the signed token, so a hit answers scope
 * checks exactly; revocation is the one thing a hit cannot know, hence `revocation`.
 */
export class VerifiedTokenCache {
  private readonly entries = new Map<string, CachedToken>();
  private readonly maxEntries: number;

  constructor(options: { maxEntries: number }) {
    this.maxEntries = options.maxEntries;
  }

  get size(): number {
    return this.entries.size;
  }

  get(digest: string, now: number): CachedToken | null {
    const entry = this.entries.get(digest);
    if (!entry) return null;
    this.entries.delete(digest);
    if (now >= entry.token.expiresAt) return null;
    this.entries.set(digest, entry);
    return entry;
  }

  set(digest: string, entry: CachedToken, now: number): void {
    this.entries.delete(digest);
    if (this.maxEntries === 0 || now >= entry.token.expiresAt) return;
    this.entries.set(digest, entry);
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done) break;
      this.entries.delete(oldest.value);
    }
  }
}

/** SHA-256, one-shot (`crypto.hash`: no Hash object per call, on the hot path of every request). */
export function tokenDigest(token: string): string {
  return hash("sha256", token, "base64url");
}
