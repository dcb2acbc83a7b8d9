import { createHmac } from "node:crypto";
import type { Redis } from "ioredis";
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterRedis,
  type RateLimiterRes,
} from "rate-limiter-flexible";
import type { AuthConfig } from "../config/auth-config.ts";
import { StorageUnavailableError } from "../errors/gatehouse-error.ts";
import { addressGroup } from "../lib/address-group.ts";
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

/** Failures are forgotten a day after the first of them (the count's window is fixed). */
const FAILURE_MEMORY_SECONDS = 86_400;

/**
 * One failure counted and its wait started in one step on Redis: KEYS[1] the failure
 * count, KEYS[2] the brake; ARGV: memory (s), free failures, longest wait (s), the value
 * rate-limiter-flexible writes for a block (so its `get` reads this brake as its own).
 * The same arithmetic as `count` below. As two round trips (count, then brake), an
 * attempt on another node could read the new count before the brake existed and be
 * admitted alongside the one that started it.
 */
const COUNT_AND_BRAKE = `
redis.call('set', KEYS[1], 0, 'EX', ARGV[1], 'NX')
local n = redis.call('incrby', KEYS[1], 1)
if redis.call('ttl', KEYS[1]) == -1 then redis.call('expire', KEYS[1], ARGV[1]) end
local over = n - tonumber(ARGV[2])
if over <= 0 then return {n, 0, 0} end
local before = redis.call('exists', KEYS[2])
local e = over - 1
if e > 30 then e = 30 end
local s = math.floor(math.min(2 ^ e, tonumber(ARGV[3])))
if s < 1 then s = 1 end
redis.call('set', KEYS[2], ARGV[4], 'EX', s)
return {n, s, before}`;

/**
 * One failure counted: the failures counted now, the wait it starts (s; 0: none), and (on
 * Redis) whether a brake already stood when it was counted.
 */
interface FailureCount {
  consumed: number;
  seconds: number;
  brakedBefore?: boolean;
}

/** Who is trying: the account (normalised email, whether or not it exists) and the client address. */
export interface LoginSubject {
  account: string;
  ip: string;
}

interface SubjectKeys {
  /** What the keys were made from. */
  subject: LoginSubject;
  account: string;
  ip: string;
  /** The account seen from this address, as a keyed digest (see `pairKey`). */
  pair: string;
}

/**
 * Brute-force brakes for sign-in, counted per account, per client address, and per
 * (account, address) pair. The first failures are free; each one after that doubles the
 * wait (1 s, 2 s, 4 s, … up to the configured maximum) before the next attempt is even
 * checked. Waits end by themselves.
 *
 * The account count (all addresses together) stops guessing from many addresses, but a
 * block on it alone would let anyone keep the owner out by failing every few minutes. So,
 * as OWASP's "device cookie" scheme does with a cookie, a sign-in remembers its address
 * as known for the account, and the account's block refuses only addresses it does not
 * know: the owner keeps signing in from where they usually do, braked only by the pair's
 * and the address's own counts. The pair gets the account's free failures, so a known
 * address has the budget any address had before the account was blocked.
 *
 * An attempt is counted as a failure of its account and pair when it is admitted, before
 * its password is checked, and cleared when the password turns out right: counted when it
 * ended, a burst of guesses at one account sent together would all be admitted (each
 * checked while the others were still hashing), and the brakes would start only after a
 * thousand guesses had been made. The address is charged when the password is found
 * wrong, as before: counted up front, the sign-ins in flight behind one NAT (an office at
 * 9 am) would brake each other, and every refusal then charges the address further.
 *
 * A refused attempt counts as a failure of its address, so polling during a wait is not
 * free: it spends the address's budget and pushes its own wait out. A success clears the
 * account's and the pair's counts, not the address's, so one valid account does not reset
 * an attacker's budget.
 *
 * Counters live in memory, or in Redis when the deployment has one (the limiter factory
 * of the runtime), so that every node brakes the same attacker.
 */
export class LoginThrottle {
  private readonly failures: RateLimiterAbstract;
  private readonly blocks: RateLimiterAbstract;
  private readonly known: RateLimiterAbstract;
  private readonly settings: AuthConfig["login"];
  private readonly pairKeySource: () => Buffer;
  private pairKeyValue: Buffer | undefined;
  /**
   * Each attempt's keys, made once: the same subject goes to `admit` and then to `success`
   * or `failure`, and the pair's HMAC, computed on the event loop while argon2 fills the
   * cores, was ~6% of a sign-in's event-loop time when made twice (docs/benchmarks.md,
   * ninth session).
   */
  private readonly subjectKeys = new WeakMap<LoginSubject, SubjectKeys>();

  constructor(
    settings: AuthConfig["login"],
    options: {
      factory?: LimiterFactory | undefined;
      /**
       * Key of the pair digests (called once, on first use). Every node must use the same
       * one; keyed so the store does not hold a readable record of who signs in from where.
       */
      pairKey: () => Buffer;
    },
  ) {
    // The in-memory store expires entries with setTimeout, which fires at once (with only
    // a warning) past 2^31 - 1 ms: a longer memory would forget every address at once.
    if (settings.knownAddressDays * 86_400_000 > 2 ** 31 - 1) {
      throw new TypeError("knownAddressDays must be at most 24 (Node timers stop at 2^31 ms)");
    }
    this.settings = settings;
    this.pairKeySource = options.pairKey;
    const factory: LimiterFactory =
      options.factory ??
      ((policy, keyPrefix) =>
        new RateLimiterMemory({ keyPrefix, points: policy.limit, duration: policy.windowSeconds }));
    this.failures = factory(
      { limit: Number.MAX_SAFE_INTEGER, windowSeconds: FAILURE_MEMORY_SECONDS },
      "login-failures",
    );
    this.blocks = factory({ limit: 1, windowSeconds: 1 }, "login-blocks");
    this.known = factory({ limit: 1, windowSeconds: this.knownSeconds }, "login-known");
  }

  private get knownSeconds(): number {
    return this.settings.knownAddressDays * 86_400;
  }

  private keys(subject: LoginSubject): SubjectKeys {
    const known = this.subjectKeys.get(subject);
    // Made for this very object, so for the same account and address (a caller that
    // changed the object's fields in between gets fresh keys).
    if (known && known.subject.account === subject.account && known.subject.ip === subject.ip) return known;
    this.pairKeyValue ??= this.pairKeySource();
    // An IPv6 sender is its /64: one subscriber holds all of it, and counted per full
    // address, each of its 2^64 addresses had free failures of its own (and an owner's
    // next privacy address was a stranger to the account).
    const sender = addressGroup(subject.ip);
    const pair = createHmac("sha256", this.pairKeyValue).update(`${subject.account}\0${sender}`).digest("base64url");
    const keys = {
      subject: { account: subject.account, ip: subject.ip },
      account: `account:${subject.account}`,
      ip: `ip:${sender}`,
      pair: `pair:${pair}`,
    };
    this.subjectKeys.set(subject, keys);
    return keys;
  }

  /**
   * Seconds to wait before this attempt may be checked; 0: go ahead. Either way the
   * attempt is counted: a refused one against its address; an admitted one as a failure
   * of the account and the pair, until `success` (the password was right) or `release`
   * (it was never checked) says otherwise. A wrong password then goes to `rejected`.
   */
  async admit(subject: LoginSubject): Promise<number> {
    const keys = this.keys(subject);
    const [account, ip, pair, known, ...counted] = await unavailableOnError(
      Promise.all([
        this.blocks.get(keys.account),
        this.blocks.get(keys.ip),
        this.blocks.get(keys.pair),
        this.known.get(keys.pair),
        this.failures.get(keys.account),
        this.failures.get(keys.pair),
      ]),
    );
    const wait = (res: RateLimiterRes | null) => (res && res.consumedPoints > 1 ? res.msBeforeNext : 0);
    const isKnown = known !== null && known.consumedPoints > 0;
    const ms = Math.max(isKnown ? 0 : wait(account), wait(ip), wait(pair));
    if (ms > 0) return Math.max(Math.ceil(ms / 1000), await this.refuse(keys));
    // Counted now, not when the password has been checked: the brake this attempt may
    // start then stops the attempts sent alongside it.
    const charged = await unavailableOnError(
      Promise.all([
        this.count(keys.account, this.settings.freeFailuresPerAccount),
        this.count(keys.pair, this.settings.freeFailuresPerAccount),
      ]),
    );
    // Past the free failures, one attempt at a time: if others were counted between this
    // one's look at the brakes and its own count (concurrent attempts, other nodes), the
    // first of them started the brake and this one is refused by it.
    // On Redis, also when a brake already stood as this attempt was counted: the reads above
    // are separate round trips, so another node's count-and-brake can fall between this
    // attempt's look at the brake and its look at the count.
    const overtaken = charged.some(
      (count, i) =>
        (i > 0 || !isKnown) &&
        count.seconds > 0 &&
        (count.consumed > (counted[i]?.consumedPoints ?? 0) + 1 || count.brakedBefore === true),
    );
    if (!overtaken) return 0;
    // Refused after all, its password never checked: its counts are taken back (the brakes
    // it met stay), and it is charged to its address as any refusal is. The wait named is
    // the brakes that apply to it (not the account's, from an address the account knows).
    await unavailableOnError(Promise.all([this.failures.reward(keys.account, 1), this.failures.reward(keys.pair, 1)]));
    const waits = charged.filter((_, i) => i > 0 || !isKnown).map((count) => count.seconds);
    return Math.max(1, ...waits, await this.refuse(keys));
  }

  /** A refused attempt: a failure of its address. Returns the wait that starts (s). */
  private async refuse(keys: SubjectKeys): Promise<number> {
    return (await unavailableOnError(this.count(keys.ip, this.settings.freeFailuresPerIp))).seconds;
  }

  /** The admitted attempt's password was wrong: its address is charged too. */
  async rejected(subject: LoginSubject): Promise<void> {
    await this.refuse(this.keys(subject));
  }

  /**
   * Counts one failed attempt in full (account, pair and address), for failures that did
   * not come through `admit`: tests build long waits with it.
   */
  async failure(subject: LoginSubject): Promise<void> {
    const keys = this.keys(subject);
    await unavailableOnError(
      Promise.all([
        this.count(keys.account, this.settings.freeFailuresPerAccount),
        this.count(keys.pair, this.settings.freeFailuresPerAccount),
        this.count(keys.ip, this.settings.freeFailuresPerIp),
      ]),
    );
  }

  /**
   * An admitted attempt that was never checked (the hasher was full, storage failed, the
   * account changed while it was made): its count is taken back, so the owner is not
   * braked for Gatehouse's trouble.
   */
  async release(subject: LoginSubject): Promise<void> {
    const keys = this.keys(subject);
    await unavailableOnError(
      Promise.all([
        this.uncount(keys.account, this.settings.freeFailuresPerAccount),
        this.uncount(keys.pair, this.settings.freeFailuresPerAccount),
      ]),
    );
  }

  /** Counts one failure for `key`: the failures counted now, and the wait it starts in seconds (0: none). */
  private async count(key: string, free: number): Promise<FailureCount> {
    const atomic = await this.countOnRedis(key, free);
    if (atomic) return atomic;
    const res = await this.failures.penalty(key, 1);
    const over = res.consumedPoints - free;
    if (over <= 0) return { consumed: res.consumedPoints, seconds: 0 };
    const seconds = Math.min(2 ** Math.min(over - 1, 30), this.settings.maxDelaySeconds);
    await this.blocks.block(key, seconds);
    return { consumed: res.consumedPoints, seconds };
  }

  /**
   * `count` in one Redis script when the brakes live in a connected Redis; null otherwise
   * (memory; or Redis not ready, where the limiters answer from their in-memory insurance
   * or refuse, as configured).
   */
  private async countOnRedis(key: string, free: number): Promise<FailureCount | null> {
    const { failures, blocks } = this;
    if (!(failures instanceof RateLimiterRedis) || !(blocks instanceof RateLimiterRedis)) return null;
    // rate-limiter-flexible keeps its client as `client` (not in its typings).
    const client = (failures as unknown as { client: Redis }).client;
    if (client.status !== "ready") return null;
    // A connection lost mid-call: counted the usual way, which falls back or refuses as
    // configured (at worst this failure is counted twice).
    const reply = await client
      .eval(
        COUNT_AND_BRAKE,
        2,
        failures.getKey(key),
        blocks.getKey(key),
        FAILURE_MEMORY_SECONDS,
        free,
        this.settings.maxDelaySeconds,
        // What rate-limiter-flexible's block() writes: its points (1) + 1.
        2,
      )
      .catch(() => null);
    if (reply === null) return null;
    const [consumed, seconds, before] = reply as [number, number, number];
    return { consumed, seconds, brakedBefore: before === 1 };
  }

  /**
   * Takes one counted failure back from `key`, and the brake with it if the count is back
   * within the free failures (a brake this very attempt started when it was admitted).
   */
  private async uncount(key: string, free: number): Promise<void> {
    const res = await this.failures.reward(key, 1);
    // Below zero when the count was forgotten in between (a day after its first failure): an
    // address must not bank free failures.
    if (res.consumedPoints <= 0) await this.failures.delete(key);
    if (res.consumedPoints <= free) await this.blocks.delete(key);
  }

  /** The password was right: clear the account's and the pair's counts, and remember the address. */
  async success(subject: LoginSubject): Promise<void> {
    const keys = this.keys(subject);
    await unavailableOnError(
      Promise.all([
        this.failures.delete(keys.account),
        this.blocks.delete(keys.account),
        this.failures.delete(keys.pair),
        this.blocks.delete(keys.pair),
        this.known.set(keys.pair, 1, this.knownSeconds),
      ]),
    );
  }
}
