import type { Logger } from "pino";
import { AuditLog } from "./audit/audit-log.ts";
import type { GatehouseConfig } from "./config/config.ts";
import { Housekeeper } from "./housekeeping/housekeeper.ts";
import type { RandomBytes } from "./keys/key-format.ts";
import { KeyService } from "./keys/key-service.ts";
import { KeyVerifier } from "./keys/key-verifier.ts";
import { type ChangeFeed, LocalChangeFeed } from "./lib/change-feed.ts";
import { type Clock, systemClock } from "./lib/clock.ts";
import { Metrics } from "./observability/metrics.ts";
import { KeyRateLimiter, type LimiterFactory } from "./ratelimit/key-rate-limiter.ts";
import { SessionService } from "./sessions/session-service.ts";
import { SigningKeyring, SYSTEM_ACTOR } from "./signing/keyring.ts";
import { loadMasterKey } from "./signing/master-key.ts";
import type { Storage } from "./storage/types.ts";
import { TokenService } from "./tokens/token-service.ts";
import { UsageRecorder } from "./usage/usage-recorder.ts";
import { LoginThrottle } from "./users/login-throttle.ts";
import { PasswordHasher } from "./users/password-hasher.ts";
import { PasswordPolicy } from "./users/password-policy.ts";
import { UserService } from "./users/user-service.ts";

/** Everything a running Gatehouse is made of, wired once; HTTP and the CLI both use it. */
export interface Gatehouse {
  config: GatehouseConfig;
  storage: Storage;
  clock: Clock;
  keys: KeyService;
  verifier: KeyVerifier;
  limiter: KeyRateLimiter;
  usage: UsageRecorder;
  audit: AuditLog;
  /** Signing keys for access tokens (published at /.well-known/jwks.json). */
  keyring: SigningKeyring;
  users: UserService;
  tokens: TokenService;
  sessions: SessionService;
  loginThrottle: LoginThrottle;
  metrics: Metrics;
  housekeeper: Housekeeper;
  /** Change notifications: local, or across nodes through Redis. */
  changes: ChangeFeed;
  /** Flushes buffered usage and audit events, then closes storage. */
  stop(): Promise<void>;
}

export function createGatehouse(options: {
  config: GatehouseConfig;
  storage: Storage;
  clock?: Clock;
  randomBytes?: RandomBytes;
  limiterFactory?: LimiterFactory | undefined;
  log?: Logger;
  changes?: ChangeFeed;
  /** Closed after storage on stop (Redis connections). */
  onStop?: () => Promise<void>;
  /** Set false for one-shot CLI commands: no timers, flush on stop only. */
  background?: boolean;
}): Gatehouse {
  const { config, storage } = options;
  const clock = options.clock ?? systemClock;
  const background = options.background ?? true;
  const usage = new UsageRecorder(storage, {
    intervalMs: background ? config.usageFlushMs : 0,
    ...(options.log ? { log: options.log } : {}),
  });
  const audit = new AuditLog(storage, {
    intervalMs: background ? 250 : 0,
    ...(options.log ? { log: options.log } : {}),
  });
  const limiter = new KeyRateLimiter({
    now: clock,
    ...(options.limiterFactory ? { factory: options.limiterFactory } : {}),
  });
  const changes = options.changes ?? new LocalChangeFeed();
  const keys = new KeyService({
    storage,
    policy: config.keys,
    clock,
    onChange: (keyId) => changes.publish("key", keyId),
    ...(options.randomBytes ? { randomBytes: options.randomBytes } : {}),
  });
  const metrics = new Metrics(storage);
  const housekeeper = new Housekeeper({
    storage,
    clock,
    retention: config.retention,
    ...(options.log ? { log: options.log } : {}),
  });
  if (background) housekeeper.start(config.housekeepingIntervalSeconds * 1000);
  const verifier = new KeyVerifier({
    storage,
    policy: config.keys,
    clock,
    limiter,
    usage,
    audit,
    changes,
    onOutcome: (outcome) => metrics.verifications.inc({ outcome }),
  });
  const keyring = new SigningKeyring({
    storage,
    masterKey: () => loadMasterKey(config),
    signing: config.auth.signing,
    accessTokenSeconds: config.auth.accessTokenSeconds,
    clock,
  });
  const users = new UserService({
    storage,
    hasher: new PasswordHasher(config.auth.password.argon2),
    policy: new PasswordPolicy(config.auth.password),
    clock,
  });
  const tokens = new TokenService({ storage, keyring, audit, clock, issuer: config.issuer, auth: config.auth });
  const sessions = new SessionService({ storage, clock, settings: config.auth });
  const loginThrottle = new LoginThrottle(config.auth.login, { factory: options.limiterFactory });
  let authTimer: NodeJS.Timeout | undefined;
  if (background) {
    // Hourly: rotate the signing key when it is due, and drop spent tokens and sessions.
    authTimer = setInterval(() => {
      const now = clock();
      void keyring
        .rotateIfDue(SYSTEM_ACTOR)
        .catch((error) => options.log?.warn({ err: error }, "signing key rotation failed"));
      void Promise.all([storage.tokens.prune(now), storage.sessions.prune(now)]).catch((error) =>
        options.log?.warn({ err: error }, "token pruning failed"),
      );
    }, 3_600_000);
    authTimer.unref();
  }
  let stopped: Promise<void> | undefined;
  return {
    config,
    storage,
    keyring,
    users,
    tokens,
    sessions,
    loginThrottle,
    clock,
    keys,
    verifier,
    limiter,
    usage,
    audit,
    changes,
    metrics,
    housekeeper,
    stop() {
      stopped ??= (async () => {
        if (authTimer) clearInterval(authTimer);
        housekeeper.stop();
        await usage.stop();
        await audit.stop();
        await storage.close();
        await options.onStop?.();
      })();
      return stopped;
    },
  };
}
