import type { Logger } from "pino";
import type { Clock } from "../lib/clock.ts";
import type { IndexedKey, Storage } from "../storage/types.ts";
import { KeyIndex } from "./key-index.ts";
import { keyStatus } from "./key-status.ts";

const PAGE = 256;

/**
 * Keeps a KeyIndex equal to storage's active keys. Loads them at start, then follows the
 * key change log (storage migration 3): every insert, revocation, rotation or edit made
 * by any connection (this process, another node, the CLI) is logged by trigger in the
 * same transaction, and `catchUp()` re-reads the keys named there. The log is durable,
 * so unlike pub/sub nothing can be missed: a reader that fell behind the log's pruning
 * reloads everything.
 *
 * Timing: this process's own writes are followed before they answer (KeyService awaits
 * `catchUp`); other processes' writes within `pollMs`, or at once when the change feed
 * says so.
 */
export class ActiveKeys {
  private current = new KeyIndex();
  private readonly storage: Storage;
  private readonly clock: Clock;
  private readonly log: Logger | undefined;
  private readonly pollMs: number;
  private position = 0;
  /** Reads of the change log (and reloads) begun so far: see `adopt`. */
  private passes = 0;
  private loaded = false;
  private running: Promise<void> | null = null;
  private again = false;
  private readonly listeners: Array<(keyId: string) => void> = [];
  private pollTimer: NodeJS.Timeout | undefined;
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: { storage: Storage; clock: Clock; log?: Logger; pollMs?: number }) {
    this.storage = options.storage;
    this.clock = options.clock;
    this.log = options.log;
    this.pollMs = options.pollMs ?? 100;
  }

  get index(): KeyIndex {
    return this.current;
  }

  /** True once the index holds every active key; until then, use storage. */
  get ready(): boolean {
    return this.loaded;
  }

  /**
   * Hears every key id the change log brings, whichever process made the change: caches
   * of whole key records (the caller cache) drop theirs.
   */
  onApplied(listener: (keyId: string) => void): void {
    this.listeners.push(listener);
  }

  /** Loads every active key, then starts following the change log. */
  async start(): Promise<void> {
    await this.reload();
    this.pollTimer = setInterval(() => void this.catchUp().catch(() => {}), this.pollMs);
    this.pollTimer.unref();
    // Revoked and expired keys leave the index (a miss asks storage, which answers
    // REVOKED or EXPIRED); the sweep keeps memory to the keys that can still pass.
    this.sweepTimer = setInterval(() => this.index.removeDead(this.clock()), 60_000);
    this.sweepTimer.unref();
  }

  stop(): void {
    clearInterval(this.pollTimer);
    clearInterval(this.sweepTimer);
  }

  /**
   * A mark to take before reading a key from storage, for `adopt` after the read; null
   * until the index is loaded.
   */
  mark(): number | null {
    return this.loaded ? this.passes : null;
  }

  /**
   * Puts an active key just read from storage into the index, so that its uses are counted
   * there from the first (a key another process created reaches the index only with the
   * next poll, and counted until then by a limiter of its own, it could pass up to twice
   * its limit in its first window). Safe only if no read of the change log began since
   * `mark` was taken, before the storage read: a change committed after the read is then
   * still to be applied, and will be; one applied in between (a revocation) would be undone
   * by the stale record, and the log would not bring it again. Returns the key's index
   * record, or -1 when it was not adopted.
   *
   * The argument leans on SQLite (the only store with an index): its reads run when they are
   * called, so a pass that began after the mark read the log after the key. With a store
   * whose reads run later than they are issued, it would not hold as it stands.
   */
  adopt(key: IndexedKey, mark: number | null): number {
    if (mark === null || mark !== this.passes || !this.loaded) return -1;
    this.current.upsert(key);
    return this.current.find(key.digest);
  }

  private async reload(): Promise<void> {
    this.passes++;
    // The position is read first: changes during the scan are applied again afterwards,
    // and applying a change twice is harmless.
    const position = await this.storage.keys.lastChange();
    const now = this.clock();
    // Sized for every stored key up front (dead ones are few: housekeeping deletes them),
    // so a million keys load without a copy on the way.
    const index = new KeyIndex(await this.storage.keys.count());
    for await (const page of this.storage.keys.scanActive(now, PAGE)) {
      for (const key of page) index.upsert(key);
    }
    this.current = index;
    this.position = position;
    this.loaded = true;
    await this.apply();
  }

  /**
   * Applies every logged change not applied yet. Calls made while one runs are served by
   * one more run after it, so a caller's own write is always included when it resolves.
   */
  catchUp(): Promise<void> {
    if (!this.loaded) return Promise.resolve();
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      try {
        do {
          this.again = false;
          await this.apply();
        } while (this.again);
      } finally {
        this.running = null;
      }
    })();
    return this.running;
  }

  private async apply(): Promise<void> {
    for (;;) {
      this.passes++;
      const changes = await this.storage.keys.changesSince(this.position, PAGE);
      if (changes.gap) {
        this.log?.warn("key change log was pruned past this node's position: reloading every key");
        this.position = 0;
        this.loaded = false;
        await this.reload();
        return;
      }
      if (changes.ids.length === 0) return;
      const now = this.clock();
      for (const id of new Set(changes.ids)) {
        const key = await this.storage.keys.findById(id);
        // A deleted key cannot be found by id here; only dead keys are ever deleted, and
        // the sweep drops those.
        if (!key) continue;
        if (keyStatus(key, now) === "active") this.index.upsert(key);
        else this.index.remove(key.digest);
      }
      for (const id of changes.ids) for (const listener of this.listeners) listener(id);
      this.position = changes.last;
    }
  }
}
