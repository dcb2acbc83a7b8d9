import { type RateLimiterAbstract, RateLimiterMemory, type RateLimiterRes } from "rate-limiter-flexible";
import type { AuthConfig } from "../config/auth-config.ts";
import { StorageUnavailableError } from "../errors/gatehouse-error.ts";
import type { LimiterFactory } from "../ratelimit/key-rate-limiter.ts";

/**
 * A shared limiter that cannot answer (Redis down with fail-closed limits) refuses sign-in
 * with 503 rather than letting attempts through unbraked or failing with a bare 500.
 */
async function unavailableOnError<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (error) {
    throw new StorageUnavailableError(error);
  }
}

/** Failures are forgotten a day after the last one. */
const FAILURE_MEMORY_SECONDS = 86_400;

/**
 * Brute-force brakes for sign-in, counted per account (normalised email, whether or not
 * it exists) and per client address. The first failures are free; each one after that
 * doubles the wait (1 s, 2 s, 4 s, … up to the configured maximum) before the next
 * attempt is even checked. Waits end by themselves and a success clears the account's
 * count, so nobody can lock a victim out for good; the per-address count is not cleared
 * by a success, so one valid account does not reset an attacker's budget.
 *
 * Counters live in memory, or in Redis when the deployment has one (the limiter factory
 * of the runtime), so that every node brakes the same attacker.
 */
export class LoginThrottle {
  private readonly failures: RateLimiterAbstract;
  private readonly blocks: RateLimiterAbstract;
  private readonly settings: AuthConfig["login"];

  constructor(settings: AuthConfig["login"], options: { factory?: LimiterFactory | undefined } = {}) {
    this.settings = settings;
    const factory: LimiterFactory =
      options.factory ??
      ((policy, keyPrefix) =>
        new RateLimiterMemory({ keyPrefix, points: policy.limit, duration: policy.windowSeconds }));
    this.failures = factory(
      { limit: Number.MAX_SAFE_INTEGER, windowSeconds: FAILURE_MEMORY_SECONDS },
      "login-failures",
    );
    this.blocks = factory({ limit: 1, windowSeconds: 1 }, "login-blocks");
  }

  private static keys(subject: { account: string; ip: string }): { account: string; ip: string } {
    return { account: `account:${subject.account}`, ip: `ip:${subject.ip}` };
  }

  /** Seconds to wait before another attempt for this account or from this address; 0: go ahead. */
  async retryAfter(subject: { account: string; ip: string }): Promise<number> {
    const keys = LoginThrottle.keys(subject);
    const [account, ip] = await unavailableOnError(
      Promise.all([this.blocks.get(keys.account), this.blocks.get(keys.ip)]),
    );
    const wait = (res: RateLimiterRes | null) => (res && res.consumedPoints > 1 ? res.msBeforeNext : 0);
    return Math.ceil(Math.max(wait(account), wait(ip)) / 1000);
  }

  async failure(subject: { account: string; ip: string }): Promise<void> {
    const keys = LoginThrottle.keys(subject);
    await unavailableOnError(
      Promise.all([
        this.count(keys.account, this.settings.freeFailuresPerAccount),
        this.count(keys.ip, this.settings.freeFailuresPerIp),
      ]),
    );
  }

  private async count(key: string, free: number): Promise<void> {
    const res = await this.failures.penalty(key, 1);
    const over = res.consumedPoints - free;
    if (over <= 0) return;
    const seconds = Math.min(2 ** Math.min(over - 1, 30), this.settings.maxDelaySeconds);
    await this.blocks.block(key, seconds);
  }

  async success(subject: { account: string; ip: string }): Promise<void> {
    const keys = LoginThrottle.keys(subject);
    await unavailableOnError(Promise.all([this.failures.delete(keys.account), this.blocks.delete(keys.account)]));
  }
}
