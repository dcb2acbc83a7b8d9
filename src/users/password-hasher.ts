import { hash, parseOptions, verify } from "@node-rs/argon2";
import { BusyError } from "../errors/gatehouse-error.ts";

export interface Argon2Parameters {
  memoryKiB: number;
  timeCost: number;
  parallelism: number;
}

/** `Algorithm.Argon2id` of @node-rs/argon2 (an ambient const enum, not importable as a value). */
const ARGON2ID = 2;

/** Hashes that may wait for a slot before more are refused (PasswordHasher). */
export const DEFAULT_MAX_WAITING = 256;

/** libuv's thread pool size: UV_THREADPOOL_SIZE (1–1024), else 4. */
export function threadPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const size = Number(env.UV_THREADPOOL_SIZE);
  return Number.isSafeInteger(size) && size >= 1 ? Math.min(size, 1024) : 4;
}

/**
 * argon2id password hashing (RFC 9106; OWASP's minimum m=19 MiB, t=2, p=1). Hashing runs
 * on libuv's thread pool, off the event loop, so sign-ins do not stall other routes.
 *
 * At most `maxConcurrent` hashes run at once (default: the pool size − 1); the rest wait
 * here, in JavaScript. A hash holds a pool thread for its whole run (~10–20 ms), so
 * without the cap a burst of sign-ins takes every thread and anything else that needs
 * the pool (WebCrypto signing the new access token, file system calls, DNS) waits
 * behind the hashes. One free thread keeps those prompt; the hashes left still fill
 * every core on machines with fewer cores than threads.
 *
 * At most `maxWaiting` wait (default 256, about 2 s of hashing at this project's
 * benchmark host's rate); past that a hash is refused with BusyError (503, Retry-After).
 * Unbounded, a burst of a thousand sign-ins made every sign-in behind it wait ~17 s,
 * longer than most clients wait for an answer, and held each one's request in memory.
 */
export class PasswordHasher {
  private readonly parameters: Argon2Parameters;
  private readonly maxConcurrent: number;
  private readonly maxWaiting: number;
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  private dummy: Promise<string> | undefined;
  private dummyChecks = 0;

  constructor(parameters: Argon2Parameters, options: { maxConcurrent?: number; maxWaiting?: number } = {}) {
    this.parameters = parameters;
    const maxConcurrent = options.maxConcurrent ?? Math.max(1, threadPoolSize() - 1);
    if (!Number.isSafeInteger(maxConcurrent) || maxConcurrent < 1) {
      throw new TypeError("maxConcurrent must be a positive integer");
    }
    const maxWaiting = options.maxWaiting ?? DEFAULT_MAX_WAITING;
    if (!Number.isSafeInteger(maxWaiting) || maxWaiting < 0) {
      throw new TypeError("maxWaiting must be a whole number");
    }
    this.maxConcurrent = maxConcurrent;
    this.maxWaiting = maxWaiting;
  }

  /** Hashes running now, and hashes waiting for a slot (for metrics and tests). */
  get load(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  /** Runs `work` when fewer than `maxConcurrent` hashes are running, first come first served. */
  private async limited<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.maxConcurrent) {
      if (this.waiting.length >= this.maxWaiting) {
        throw new BusyError("Too many passwords are waiting to be checked.");
      }
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      return await work();
    } finally {
      // Hand the slot straight to the next in line (running stays the same), or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  private options() {
    return {
      algorithm: ARGON2ID,
      memoryCost: this.parameters.memoryKiB,
      timeCost: this.parameters.timeCost,
      parallelism: this.parameters.parallelism,
    };
  }

  hash(password: string): Promise<string> {
    return this.limited(() => hash(password, this.options()));
  }

  /**
   * Checks a password against a stored hash. `rehash` is true when the hash was made with
   * other parameters than today's (or is not argon2id): the caller stores a new one.
   */
  async verify(stored: string, password: string): Promise<{ ok: boolean; rehash: boolean }> {
    // A hash made with other parameters than today's (older, weaker ones, kept until its
    // owner next signs in) checks faster than today's would. Alone, that speed would tell
    // a known account from an unknown one, whose dummy check uses today's parameters, as
    // soon as the parameters are raised. So a check under today's runs beside it, and the
    // answer comes no sooner than an unknown account's.
    this.assertRoom();
    const outdated = this.needsRehash(stored);
    const [ok] = await Promise.all([this.check(stored, password), outdated ? this.burnDummy(password) : undefined]);
    return { ok, rehash: ok && outdated };
  }

  /**
   * Refuses a sign-in check unless the queue has room for two hashes, whatever the check
   * will need: a known account whose hash is outdated takes two (its own and the dummy
   * beside it), an unknown one takes one, and a queue that refused only the first would
   * tell them apart when it is nearly full.
   */
  private assertRoom(): void {
    if (this.running + this.waiting.length + 2 > this.maxConcurrent + this.maxWaiting) {
      throw new BusyError("Too many passwords are waiting to be checked.");
    }
  }

  private async check(stored: string, password: string): Promise<boolean> {
    // A stored hash argon2 cannot read is a failed check; a full queue (BusyError) is not.
    return this.limited(async () => {
      try {
        return await verify(stored, password);
      } catch {
        return false;
      }
    });
  }

  needsRehash(stored: string): boolean {
    try {
      const parsed = parseOptions(stored);
      return (
        Number(parsed.algorithm) !== ARGON2ID ||
        parsed.memoryCost !== this.parameters.memoryKiB ||
        parsed.timeCost !== this.parameters.timeCost ||
        parsed.parallelism !== this.parameters.parallelism
      );
    } catch {
      return true;
    }
  }

  /**
   * Spends the same work as a real check, for unknown accounts, so timing does not tell
   * whether an account exists. The dummy hash uses today's parameters.
   */
  async burn(password: string): Promise<void> {
    this.assertRoom();
    await this.burnDummy(password);
  }

  private async burnDummy(password: string): Promise<void> {
    const dummy = await this.dummyHash();
    this.dummyChecks++;
    await this.limited(async () => {
      try {
        return await verify(dummy, password);
      } catch {
        return false;
      }
    });
  }

  /** Checks against the dummy hash so far (tests read it; each is a hash's worth of work). */
  get dummyCheckCount(): number {
    return this.dummyChecks;
  }

  /**
   * Makes the dummy hash now rather than at the first unknown account, whose sign-in would
   * otherwise take two hashes' time (telling that it was unknown).
   */
  async warm(): Promise<void> {
    await this.dummyHash();
  }

  private dummyHash(): Promise<string> {
    this.dummy ??= this.hash("gatehouse dummy password, never matches");
    return this.dummy;
  }
}
