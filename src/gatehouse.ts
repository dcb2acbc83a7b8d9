import type { Logger } from "pino";
import { AuditLog } from "./audit/audit-log.ts";
import type { GatehouseConfig } from "./config/config.ts";
import { Housekeeper } from "./housekeeping/housekeeper.ts";
import { ActiveKeys } from "./keys/active-keys.ts";
import { KeyExpiryWatch } from "./keys/expiry-watch.ts";
import type { RandomBytes } from "./keys/key-format.ts";
import { KeyService } from "./keys/key-service.ts";
import { KeyVerifier } from "./keys/key-verifier.ts";
import { type ChangeFeed, LocalChangeFeed } from "./lib/change-feed.ts";
import { type Clock, systemClock } from "./lib/clock.ts";
import type { IssuedKind } from "./observability/issued.ts";
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
  /** Every active API key in memory (embedded SQLite mode); null when verification reads storage. */
  activeKeys: ActiveKeys | null;
  /** Loads what must be in memory before serving (the active keys); call once before listening. */
  start(): Promise<void>;
  /**
   * Flushes buffered usage and audit events, then closes storage. False when some of them
   * could not be written (and are lost; logged as an error).
   */
  stop(): Promise<boolean>;
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
    clock,
    ...(options.log ? { log: options.log } : {}),
  });
  const limiter = new KeyRateLimiter({
    now: clock,
    ...(options.limiterFactory ? { factory: options.limiterFactory } : {}),
  });
  const changes = options.changes ?? new LocalChangeFeed();
  // The in-memory key index serves one process over SQLite (the embedded default), where
  // it turns every verification into a memory lookup. With PostgreSQL, several nodes
  // share the keys and each verification reads the database, so a revocation on one node
  // holds on every node at once, with no propagation delay to reason about.
  const activeKeys =
    storage.kind === "sqlite" && background
      ? new ActiveKeys({ storage, clock, ...(options.log ? { log: options.log } : {}) })
      : null;
  if (activeKeys) {
    changes.subscribe((event) => {
      if (event.kind === "reset" || event.topic === "key") void activeKeys.catchUp().catch(() => {});
    });
  }
  const metrics = new Metrics(storage);
  const onIssued = (kind: IssuedKind) => metrics.countIssued(kind);
  const keys = new KeyService({
    storage,
    policy: config.keys,
    clock,
    // Published to other nodes' caches, and applied to this node's index before the
    // change is answered: a key revoked through this node fails its very next check.
    onChange: async (keyId) => {
      changes.publish("key", keyId);
      // The change is committed: a failure to apply it here must not turn its answer into
      // an error. The next poll (100 ms) applies it.
      await activeKeys?.catchUp().catch((error) => options.log?.warn({ err: error }, "key index catch-up failed"));
    },
    ...(options.randomBytes ? { randomBytes: options.randomBytes } : {}),
    onIssued,
    recordRefusal: (event) => audit.record(event),
  });
  const housekeeper = new Housekeeper({
    storage,
    clock,
    retention: config.retention,
    // The access-token lifetime and five minutes of clock tolerance (see Housekeeper).
    credentialGraceMs: (config.auth.accessTokenSeconds + 300) * 1000,
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
    ...(activeKeys ? { active: activeKeys } : {}),
    onOutcome: (outcome) => metrics.countVerification(outcome),
  });
  const keyring = new SigningKeyring({
    storage,
    masterKey: (options) => loadMasterKey(config, options),
    signing: config.auth.signing,
    accessTokenSeconds: config.auth.accessTokenSeconds,
    clock,
  });
  const hasher = new PasswordHasher(config.auth.password.argon2, { maxWaiting: config.auth.password.maxWaiting });
  // In the background: the first unknown account must not pay for making the dummy hash.
  hasher.warm().catch(() => {});
  const users = new UserService({
    storage,
    hasher,
    policy: new PasswordPolicy(config.auth.password),
    clock,
  });
  const tokens = new TokenService({
    storage,
    keyring,
    audit,
    clock,
    issuer: config.issuer,
    auth: config.auth,
    onIssued,
  });
  const sessions = new SessionService({ storage, clock, settings: config.auth, onIssued });
  const loginThrottle = new LoginThrottle(config.auth.login, {
    factory: options.limiterFactory,
    pairKey: () => keyring.derivedKey("login throttle pairs"),
  });
  const expiryWatch = new KeyExpiryWatch({ storage, clock, log: options.log });
  const checkExpiries = () =>
    void expiryWatch.check().catch((error) => options.log?.warn({ err: error }, "key expiry check failed"));
  let authTimer: NodeJS.Timeout | undefined;
  if (background) {
    // Hourly: rotate the signing key when it is due, and warn of keys that call Gatehouse
    // and expire soon. (Spent tokens and sessions are the housekeeper's, in bounded batches.)
    authTimer = setInterval(() => {
      void keyring
        .rotateIfDue(SYSTEM_ACTOR)
        .catch((error) => options.log?.warn({ err: error }, "signing key rotation failed"));
      checkExpiries();
    }, 3_600_000);
    authTimer.unref();
  }
  let stopped: Promise<boolean> | undefined;
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
    activeKeys,
    async start() {
      await activeKeys?.start();
      if (background) checkExpiries();
    },
    stop() {
      stopped ??= (async () => {
        activeKeys?.stop();
        if (authTimer) clearInterval(authTimer);
        await housekeeper.stop();
        const usageWritten = await usage.stop();
        const auditWritten = await audit.stop();
        await storage.close();
        await options.onStop?.();
        return usageWritten && auditWritten;
      })();
      return stopped;
    },
  };
}
