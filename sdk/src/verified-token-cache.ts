import { LruMap } from "./lru-map.ts";
import type { VerifiedToken } from "./verified-token.ts";

export interface CachedToken {
  token: VerifiedToken;
}

/**
 * Tokens this process has already verified, so a token seen before costs a map lookup
 * and a string comparison instead of a signature check. Entries are keyed by the token's
 * signature segment (unique per token, and cheap: no hash to compute on every request)
 * and a hit must present the very token that was verified, character for character, so
 * a verified signature under another header or payload finds nothing. The tokens are
 * therefore held in memory while cached (at most `maxEntries`, none past its `exp`), as
 * the requests carrying them are. Entries are never served at or after the token's `exp`
 * (no clock tolerance here: tolerance is for clocks that disagree, not for extending a
 * cache), and the least recently used goes first once `maxEntries` is reached (a hit
 * makes an entry the most recent). Scopes come from the signed token, so a hit
 * answers scope checks exactly; revocation is the one thing a hit cannot know (the
 * revocation check keeps its answers apart: revocation-answers.ts).
 */
export class VerifiedTokenCache {
  private readonly entries: LruMap<string, { presented: string; entry: CachedToken }>;

  constructor(options: { maxEntries: number }) {
    this.entries = new LruMap(options.maxEntries);
  }

  get size(): number {
    return this.entries.size;
  }

  get(token: string, now: number): CachedToken | null {
    const key = signatureOf(token);
    // A miss, or another token under the same signature segment: no touch, no eviction.
    const found = this.entries.peek(key);
    if (!found || found.presented !== token) return null;
    if (now >= found.entry.token.expiresAt) {
      this.entries.delete(key);
      return null;
    }
    this.entries.get(key);
    return found.entry;
  }

  set(token: string, entry: CachedToken, now: number): void {
    const key = signatureOf(token);
    if (now >= entry.token.expiresAt) {
      this.entries.delete(key);
      return;
    }
    this.entries.set(key, { presented: token, entry });
  }
}

/** The third segment of a compact JWS (the whole string if it has no dot). */
function signatureOf(token: string): string {
  return token.slice(token.lastIndexOf(".") + 1);
}
