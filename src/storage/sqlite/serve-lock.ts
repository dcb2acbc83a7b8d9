import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";

/** The file `serve` locks in the data directory; it holds nothing. */
export const SERVE_LOCK_FILE = "serve.lock";

/**
 * Claims the embedded store for one `gatehouse serve`. The store works with two servers
 * (the key index follows the change log), but rate limits, sign-in brakes and the
 * caller-key cache are counted in each process: two servers started on one data directory
 * by mistake (a second unit, a manual start beside the service) silently allowed twice
 * every limit. CLI commands do not take the lock; they run beside the server.
 *
 * The lock is SQLite's own exclusive lock on an empty side file (POSIX advisory locks),
 * which the kernel drops when the process ends however it ends, SIGKILL included: no
 * stale lock to clean up after a crash. Returns the release function, or null when
 * another process holds the lock.
 */
export function lockDataDir(dataDir: string): (() => void) | null {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const lock = new DatabaseSync(join(dataDir, SERVE_LOCK_FILE), { timeout: 0 });
  try {
    // An exclusive transaction that is never committed: held until the process ends. The
    // write inside it makes a file SQLite could only open read-only (left by a `sudo
    // gatehouse serve`, say) fail here: read-only, BEGIN EXCLUSIVE succeeds and locks nothing.
    lock.exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; PRAGMA user_version = 1;");
  } catch (error) {
    lock.close();
    const errcode = (error as { errcode?: unknown }).errcode;
    if (errcode === 5) return null; // SQLITE_BUSY: held elsewhere
    if (typeof errcode === "number" && (errcode & 0xff) === 8) {
      // SQLITE_READONLY: the file (or the folder) belongs to another user.
      throw new Error(`${join(dataDir, SERVE_LOCK_FILE)} is not writable by this user`);
    }
    throw error;
  }
  return () => {
    if (lock.isOpen) lock.close();
  };
}
