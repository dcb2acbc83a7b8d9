import { hash, parseOptions, verify } from "@node-rs/argon2";

export interface Argon2Parameters {
  memoryKiB: number;
  timeCost: number;
  parallelism: number;
}

/** `Algorithm.Argon2id` of @node-rs/argon2 (an ambient const enum, not importable as a value). */
const ARGON2ID = 2;

/**
 * argon2id password hashing (RFC 9106; OWASP's minimum m=19 MiB, t=2, p=1). Hashing runs
 * on libuv's thread pool, off the event loop, so sign-ins do not stall other routes.
 */
export class PasswordHasher {
  private readonly parameters: Argon2Parameters;
  private dummy: Promise<string> | undefined;

  constructor(parameters: Argon2Parameters) {
    this.parameters = parameters;
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
    return hash(password, this.options());
  }

  /**
   * Checks a password against a stored hash. `rehash` is true when the hash was made with
   * other parameters than today's (or is not argon2id): the caller stores a new one.
   */
  async verify(stored: string, password: string): Promise<{ ok: boolean; rehash: boolean }> {
    let ok = false;
    try {
      ok = await verify(stored, password);
    } catch {
      return { ok: false, rehash: false };
    }
    return { ok, rehash: ok && this.needsRehash(stored) };
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
    this.dummy ??= this.hash("gatehouse dummy password, never matches");
    await verify(await this.dummy, password).catch(() => false);
  }
}
