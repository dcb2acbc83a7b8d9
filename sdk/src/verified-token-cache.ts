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
 * answers scope checks exactly; revocation is the one thing a hit cannot know, hence
 * `revocation`.
 */
export class VerifiedTokenCache {
  // Recency is a doubly linked list through the nodes (oldest at `head`), not the Map's
  // insertion order: finding the oldest with `map.keys().next()` walks over every entry
  // deleted from the front since V8 last compacted the table, which measured 7.8 µs per
  // eviction at 13,000 entries, and a full cache evicts on every first-seen token.
  private readonly entries = new Map<string, Node>();
  private readonly maxEntries: number;
  private head: Node | null = null;
  private tail: Node | null = null;

  constructor(options: { maxEntries: number }) {
    this.maxEntries = options.maxEntries;
  }

  get size(): number {
    return this.entries.size;
  }

  get(token: string, now: number): CachedToken | null {
    const key = signatureOf(token);
    const found = this.entries.get(key);
    if (!found || found.presented !== token) return null;
    if (now >= found.entry.token.expiresAt) {
      this.remove(found);
      return null;
    }
    // Most recently used now: to the tail.
    if (found !== this.tail) {
      this.unlink(found);
      this.append(found);
    }
    return found.entry;
  }

  set(token: string, entry: CachedToken, now: number): void {
    const key = signatureOf(token);
    const previous = this.entries.get(key);
    if (previous) this.remove(previous);
    if (this.maxEntries === 0 || now >= entry.token.expiresAt) return;
    const node: Node = { key, presented: token, entry, prev: null, next: null };
    this.entries.set(key, node);
    this.append(node);
    while (this.entries.size > this.maxEntries && this.head) this.remove(this.head);
  }

  private remove(node: Node): void {
    this.entries.delete(node.key);
    this.unlink(node);
  }

  private append(node: Node): void {
    node.prev = this.tail;
    node.next = null;
    if (this.tail) this.tail.next = node;
    else this.head = node;
    this.tail = node;
  }

  private unlink(node: Node): void {
    if (node.prev) node.prev.next = node.next;
    else this.head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.tail = node.prev;
    node.prev = null;
    node.next = null;
  }
}

interface Node {
  key: string;
  presented: string;
  entry: CachedToken;
  prev: Node | null;
  next: Node | null;
}

/** The third segment of a compact JWS (the whole string if it has no dot). */
function signatureOf(token: string): string {
  return token.slice(token.lastIndexOf(".") + 1);
}
