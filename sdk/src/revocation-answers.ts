import { LruMap } from "./lru-map.ts";
import type { VerifiedToken } from "./verified-token.ts";

/** What the revocation check last said about a token. */
export type RevocationState =
  /** Gatehouse accepted the token; ask again from `until` (ms since the epoch). */
  | { state: "active"; until: number }
  /** Gatehouse refused it: denied at logout, sign-in revoked or user disabled. Final. */
  | { state: "revoked" };

/**
 * The revocation check's answers, kept apart from the cache of verified tokens so that
 * `revocationCheck.ttlMs` holds with that cache off too (`cache.maxEntries: 0`): otherwise
 * every request would ask Gatehouse again. Keyed like the cache, by the token's signature
 * segment, and consulted only for a token that has just passed every check; the answer
 * must also be for the same `jti`, so it can only ever be about the very token verified.
 * At most `maxEntries` (least recently used go first), none past the token's `exp`.
 */
export class RevocationAnswers {
  private readonly answers: LruMap<string, { jti: string; expiresAt: number; answer: RevocationState }>;

  constructor(options: { maxEntries: number }) {
    this.answers = new LruMap(options.maxEntries);
  }

  get size(): number {
    return this.answers.size;
  }

  get(token: string, verified: VerifiedToken, now: number): RevocationState | null {
    const key = signatureOf(token);
    const found = this.answers.get(key);
    if (!found || found.jti !== verified.jti) return null;
    if (now >= found.expiresAt) {
      this.answers.delete(key);
      return null;
    }
    return found.answer;
  }

  set(token: string, verified: VerifiedToken, answer: RevocationState, now: number): void {
    const key = signatureOf(token);
    if (now >= verified.expiresAt) {
      this.answers.delete(key);
      return;
    }
    this.answers.set(key, { jti: verified.jti, expiresAt: verified.expiresAt, answer });
  }
}

/** The third segment of a compact JWS (the whole string if it has no dot). */
function signatureOf(token: string): string {
  return token.slice(token.lastIndexOf(".") + 1);
}
