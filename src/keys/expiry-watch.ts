import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import type { ApiKeyRecord, Storage } from "../storage/types.ts";

const DAY = 86_400_000;

/** How far ahead a key that calls Gatehouse is warned about. */
export const EXPIRY_WARNING_DAYS = 14;

/** Keys read per check at most (the soonest first); a line says when there were more. */
const MAX_LISTED = 100;

/**
 * Warns, in the log, about API keys that call Gatehouse itself (those with permissions:
 * the admin key, the verifying services' keys) and expire within two weeks. Every key
 * expires (90 days by default), and one of these expiring unnoticed locks its holder out
 * of the admin API, or makes every verification of a resource server fail at once.
 * Keys with scopes only are your services' own and left to you (`GET /v1/keys` shows
 * `expiresAt`). Each key is named at most once a day per node.
 */
export class KeyExpiryWatch {
  private readonly storage: Storage;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;
  private readonly warned = new Map<string, number>();

  constructor(options: { storage: Storage; clock: Clock; log?: Logger | undefined }) {
    this.storage = options.storage;
    this.clock = options.clock;
    this.log = options.log;
  }

  /** Logs a warning for each key due one; returns the keys it named. */
  async check(): Promise<ApiKeyRecord[]> {
    const now = this.clock();
    // Filtered by permissions in the query: filtered after a limit, a hundred scope-only
    // keys expiring first hid the admin key (reviewer).
    const soon = await this.storage.keys.expiringWithPermissions(now, now + EXPIRY_WARNING_DAYS * DAY, MAX_LISTED + 1);
    if (soon.length > MAX_LISTED) {
      soon.length = MAX_LISTED;
      this.log?.warn(
        `More than ${MAX_LISTED} API keys with permissions expire within ${EXPIRY_WARNING_DAYS} days; the soonest are named below.`,
      );
    }
    for (const [id, at] of this.warned) if (now - at >= DAY) this.warned.delete(id);
    const due = soon.filter((key) => !this.warned.has(key.id));
    for (const key of due) {
      this.warned.set(key.id, now);
      const days = Math.max(0, Math.floor(((key.expiresAt ?? now) - now) / DAY));
      this.log?.warn(
        {
          keyId: key.id,
          name: key.name,
          hint: key.hint,
          permissions: key.permissions,
          expiresAt: new Date(key.expiresAt ?? now).toISOString(),
        },
        `API key ${key.id} ("${key.name}", permissions ${key.permissions.join(" ")}) expires in ${days === 0 ? "less than a day" : `${days} day(s)`}: rotate it (POST /v1/keys/${key.id}/rotate with a grace period) and give its holder the new key.`,
      );
    }
    return due;
  }
}
