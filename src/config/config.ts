import { accessSync, constants, statSync } from "node:fs";
import { isIP } from "node:net";
import { resolve } from "node:path";
import { assertValidPrefix, DEFAULT_KEY_PREFIX } from "../keys/key-format.ts";
import type { KeyPolicy } from "../keys/key-policy.ts";
import { parseGithubPublicKeys } from "../leaks/github-public-keys.ts";
import { type AuthConfig, loadAuthConfig } from "./auth-config.ts";
import { nearestSetting } from "./nearest-setting.ts";

export interface GatehouseConfig {
  /** Not errors, but worth telling the operator (unknown GATEHOUSE_* variables). */
  warnings: string[];
  port: number;
  host: string;
  dataDir: string;
  issuer: string;
  /** False when the issuer was derived from the host and port, which differ between nodes. */
  issuerSet: boolean;
  tls: { certFile: string; keyFile: string } | null;
  /** Addresses/CIDRs of TLS-terminating proxies whose X-Forwarded-* headers we trust. */
  trustedProxies: string[];
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  keys: KeyPolicy;
  usageFlushMs: number;
  /** The nice value of libuv's pool threads under `serve` (Linux): 0 leaves them alone. */
  threadPoolNice: number;
  bodyLimitBytes: number;
  githubSecretScanning: { keysUrl: string; keysJson: string | null };
  /** Users, passwords, tokens, sessions and signing keys (src/config/auth-config.ts). */
  auth: AuthConfig;
  /** PostgreSQL instead of the embedded SQLite file when set. */
  databaseUrl: string | null;
  /** Redis for global rate limits and revocation fan-out when set. */
  redisUrl: string | null;
  /** With Redis down: refuse (503) instead of falling back to per-node limits. */
  rateLimitFailClosed: boolean;
  retention: { endedKeysDays: number; usageDays: number; usageMinuteDays: number; auditDays: number };
  housekeepingIntervalSeconds: number;
}

/**
 * One message per mistake, naming the variable, so an operator fixes them all at once.
 * Warnings (unknown GATEHOUSE_ names) come after them under their own heading: they did
 * not refuse the start, but a misspelling is often the cause of a problem listed above.
 */
export class ConfigError extends Error {
  readonly problems: string[];
  readonly warnings: string[];
  constructor(problems: string[], warnings: string[] = []) {
    const list = (items: string[]) => items.map((item) => `  - ${item}`).join("\n");
    super(
      `Invalid configuration:\n${list(problems)}${warnings.length > 0 ? `\nAlso, perhaps the cause:\n${list(warnings)}` : ""}`,
    );
    this.name = "ConfigError";
    this.problems = problems;
    this.warnings = warnings;
  }
}

type Env = Record<string, string | undefined>;

const LOOPBACK = new Set(["127.0.0.1", "::1", "localhost"]);

export function isLoopback(host: string): boolean {
  // 127.0.0.0/8 as an address only: a name such as 127.0.0.1.example.com is not loopback.
  return LOOPBACK.has(host) || (isIP(host) === 4 && host.startsWith("127."));
}

/** https, or http to a loopback address. */
function isSecureURL(url: URL): boolean {
  return url.protocol === "https:" || (url.protocol === "http:" && isLoopback(url.hostname.replace(/^\[|\]$/g, "")));
}

function isReadableFile(path: string): boolean {
  try {
    accessSync(path, constants.R_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads and checks every GATEHOUSE_ setting. `serving: false` (the CLI's commands other
 * than `serve`) leaves out the mistakes that matter only to a server that listens (port,
 * host, TLS files, a non-loopback address without TLS): a scan or a key listing run with
 * the server's environment should not fail over where the server would listen.
 * `usingStore: false` (`keys scan --offline`) likewise leaves out the data folder's.
 */
export function loadConfig(
  env: Env = process.env,
  options: { serving?: boolean; usingStore?: boolean } = {},
): GatehouseConfig {
  const serving = options.serving ?? true;
  const problems: string[] = [];
  /** Problems of the listening settings alone: reported only when serving. */
  const listenProblems: string[] = [];
  /** Problems of the data folder alone: not reported to a command that opens no store. */
  const storeProblems: string[] = [];
  const known = new Set<string>();
  const read = (name: string) => {
    known.add(name);
    const value = env[name];
    return value === undefined || value.trim() === "" ? undefined : value.trim();
  };
  const integer = (name: string, fallback: number, min: number, max: number, into = problems): number => {
    const raw = read(name);
    if (raw === undefined) return fallback;
    const value = Number(raw);
    if (!/^\d+$/.test(raw) || !Number.isSafeInteger(value) || value < min || value > max) {
      into.push(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
      return fallback;
    }
    return value;
  };
  const boolean = (name: string): boolean => {
    const raw = read(name);
    if (raw === undefined) return false;
    if (raw === "true" || raw === "1") return true;
    if (raw === "false" || raw === "0") return false;
    problems.push(`${name} must be true or false (got "${raw}")`);
    return false;
  };

  const port = integer("GATEHOUSE_PORT", 8080, 0, 65535, listenProblems);
  const host = read("GATEHOUSE_HOST") ?? "127.0.0.1";
  if (host !== "localhost" && isIP(host) === 0) {
    listenProblems.push(`GATEHOUSE_HOST must be an IP address or "localhost" (got "${host}")`);
  }
  const dataDir = resolve(read("GATEHOUSE_DATA_DIR") ?? "./data");
  // Else the first mkdir under it says only `EEXIST: file already exists, mkdir '…'`.
  if (statSync(dataDir, { throwIfNoEntry: false })?.isDirectory() === false) {
    const setting =
      read("GATEHOUSE_DATA_DIR") === undefined ? "GATEHOUSE_DATA_DIR (default ./data)" : "GATEHOUSE_DATA_DIR";
    storeProblems.push(`${setting} must be a folder, but ${dataDir} is a file`);
  }

  const certFile = read("GATEHOUSE_TLS_CERT_FILE");
  const keyFile = read("GATEHOUSE_TLS_KEY_FILE");
  if ((certFile === undefined) !== (keyFile === undefined)) {
    listenProblems.push("GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE must be set together");
  }
  for (const [name, file] of [
    ["GATEHOUSE_TLS_CERT_FILE", certFile],
    ["GATEHOUSE_TLS_KEY_FILE", keyFile],
  ] as const) {
    if (file !== undefined && !isReadableFile(file)) listenProblems.push(`${name}: cannot read the file "${file}"`);
  }
  const tls = certFile && keyFile ? { certFile, keyFile } : null;

  const trustedProxies = (read("GATEHOUSE_TRUSTED_PROXIES") ?? "")
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const entry of trustedProxies) {
    const [address, bits, extra] = entry.split("/");
    const family = isIP(address ?? "");
    const maxBits = family === 6 ? 128 : 32;
    if (
      family === 0 ||
      extra !== undefined ||
      (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))
    ) {
      problems.push(`GATEHOUSE_TRUSTED_PROXIES: "${entry}" is not an IP address or CIDR range`);
    }
  }

  // Only when no TLS setting was attempted and the host is valid: otherwise the mistake
  // is already reported, and one mistake gets one message.
  const tlsAttempted = certFile !== undefined || keyFile !== undefined;
  const validHost = host === "localhost" || isIP(host) !== 0;
  if (!tlsAttempted && validHost && trustedProxies.length === 0 && !isLoopback(host)) {
    listenProblems.push(
      `GATEHOUSE_HOST is ${host}, which is not loopback, and there is no TLS: set GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE, or name the TLS-terminating proxy in front of Gatehouse with GATEHOUSE_TRUSTED_PROXIES`,
    );
  }

  const scheme = tls || trustedProxies.length > 0 ? "https" : "http";
  const explicitIssuer = read("GATEHOUSE_ISSUER");
  // 0.0.0.0 or :: says where to listen, not where clients reach us: tokens and links
  // need the public name, so it must be given.
  const servable = tls !== null || trustedProxies.length > 0;
  if (explicitIssuer === undefined && servable && (host === "0.0.0.0" || host === "::")) {
    listenProblems.push(
      `GATEHOUSE_HOST is the wildcard address ${host}: set GATEHOUSE_ISSUER to the public URL clients use (e.g. https://auth.example.com)`,
    );
  }
  const issuer = explicitIssuer ?? `${scheme}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  // A derived issuer follows from the host and TLS settings, which are checked above;
  // only an issuer the operator wrote is judged on its own.
  if (explicitIssuer !== undefined) {
    try {
      const url = new URL(issuer);
      if (!isSecureURL(url)) {
        problems.push(`GATEHOUSE_ISSUER must be an https URL (http only on loopback) (got "${issuer}")`);
      }
      if (url.search || url.hash) problems.push("GATEHOUSE_ISSUER must not have a query or fragment");
    } catch {
      problems.push(`GATEHOUSE_ISSUER must be a URL (got "${issuer}")`);
    }
  }

  const logLevel = (read("GATEHOUSE_LOG_LEVEL") ?? "info") as GatehouseConfig["logLevel"];
  if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(logLevel)) {
    problems.push(
      `GATEHOUSE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "${logLevel}")`,
    );
  }

  const prefix = read("GATEHOUSE_KEY_PREFIX") ?? DEFAULT_KEY_PREFIX;
  try {
    assertValidPrefix(prefix);
  } catch {
    problems.push(
      `GATEHOUSE_KEY_PREFIX must be 2–12 lowercase letters or digits starting with a letter (got "${prefix}")`,
    );
  }

  const maxLifetimeSeconds = integer("GATEHOUSE_KEY_MAX_LIFETIME_SECONDS", 90 * 86400, 60, 10 * 365 * 86400);
  const allowNoExpiry = boolean("GATEHOUSE_KEY_ALLOW_NO_EXPIRY");

  let defaultRateLimit = { limit: 1000, windowSeconds: 60 };
  const rawLimit = read("GATEHOUSE_DEFAULT_RATE_LIMIT");
  if (rawLimit !== undefined) {
    const match = /^(\d+)\/(\d+)s?$/.exec(rawLimit);
    const limit = Number(match?.[1]);
    const windowSeconds = Number(match?.[2]);
    if (!match || limit < 1 || limit > 1e9 || windowSeconds < 1 || windowSeconds > 86400) {
      problems.push(
        `GATEHOUSE_DEFAULT_RATE_LIMIT must read <limit>/<window seconds>, e.g. 1000/60 (got "${rawLimit}")`,
      );
    } else {
      defaultRateLimit = { limit, windowSeconds };
    }
  }

  // Five seconds, not one: with many keys in use each flush writes rows spread over the
  // whole usage table, and fewer, larger flushes share pages. Measured with 1,000,000 keys
  // at 10,000 verifications/s after 4 minutes (bench/usage-writes.ts): 24-27 µs of CPU per
  // verification at 1 s, 12-13 at 5 s. The price: a SIGKILL loses up to 5 s of counts.
  const usageFlushMs = integer("GATEHOUSE_USAGE_FLUSH_MS", 5000, 50, 60_000);
  const threadPoolNice = integer("GATEHOUSE_THREADPOOL_NICE", 10, 0, 19);
  const bodyLimitBytes = integer("GATEHOUSE_BODY_LIMIT_BYTES", 64 * 1024, 1024, 10 * 1024 * 1024);

  const keysUrl =
    read("GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL") ?? "https://api.github.com/meta/public_keys/secret_scanning";
  try {
    if (!isSecureURL(new URL(keysUrl))) {
      problems.push(
        `GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL must be an https URL (http only on loopback) (got "${keysUrl}")`,
      );
    }
  } catch {
    problems.push(`GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL must be a URL (got "${keysUrl}")`);
  }
  const keysJson = read("GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS") ?? null;
  if (keysJson !== null) {
    try {
      if (parseGithubPublicKeys(JSON.parse(keysJson)).size === 0) throw new TypeError("no usable key");
    } catch {
      problems.push(
        'GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS must be JSON in the shape of GitHub\'s public-keys endpoint, {"public_keys": [{"key_identifier": "…", "key": "<PEM>"}]}, with at least one ECDSA P-256 key',
      );
    }
  }

  const databaseUrl = read("GATEHOUSE_DATABASE_URL") ?? null;
  if (databaseUrl !== null && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    problems.push("GATEHOUSE_DATABASE_URL must be a postgres:// or postgresql:// URL");
  }
  const redisUrl = read("GATEHOUSE_REDIS_URL") ?? null;
  if (redisUrl !== null && !/^rediss?:\/\//.test(redisUrl)) {
    problems.push("GATEHOUSE_REDIS_URL must be a redis:// or rediss:// URL");
  }

  let auth: AuthConfig | null = null;
  try {
    auth = loadAuthConfig({ read, integer, boolean }, issuer, problems);
  } catch {
    // An unparseable issuer was reported above; auth settings depend on it.
  }
  // Nodes on a shared database must not keep secrets on their own disks: the master key
  // that seals signing keys comes from the environment (or a file the operator ships to
  // every node), never one generated under a node's data directory.
  if (databaseUrl !== null && auth !== null && auth.masterKey === null) {
    problems.push(
      "GATEHOUSE_DATABASE_URL is set, so every node needs the same master key: set GATEHOUSE_MASTER_KEY (openssl rand -base64 32) or GATEHOUSE_MASTER_KEY_FILE",
    );
  }

  const rateLimitFailClosed = boolean("GATEHOUSE_RATE_LIMIT_FAIL_CLOSED");
  const retention = {
    endedKeysDays: integer("GATEHOUSE_RETENTION_ENDED_KEYS_DAYS", 30, 1, 3650),
    usageDays: integer("GATEHOUSE_RETENTION_USAGE_DAYS", 90, 1, 3650),
    // A minute query spans at most 1,500 minutes (about a day); older minutes are kept
    // summed per hour, which a key in steady use writes 60 times fewer of.
    usageMinuteDays: integer("GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS", 7, 1, 3650),
    auditDays: integer("GATEHOUSE_RETENTION_AUDIT_DAYS", 365, 1, 3650),
  };
  if (retention.usageMinuteDays > retention.usageDays) {
    problems.push(
      `GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS (${retention.usageMinuteDays}) cannot be more than GATEHOUSE_RETENTION_USAGE_DAYS (${retention.usageDays}): usage is kept per minute within the usage retention`,
    );
  }
  const housekeepingIntervalSeconds = integer("GATEHOUSE_HOUSEKEEPING_INTERVAL_SECONDS", 3600, 10, 86_400);

  // A misspelt variable would otherwise be ignored without a word. When the start is refused
  // anyway, it is listed with the problems: a misspelling is often their cause (a missing
  // GATEHOUSE_MASTER_KEY that was set as GATEHOUSE_MASTERKEY).
  const warnings = Object.keys(env)
    .filter((name) => name.startsWith("GATEHOUSE_") && !known.has(name) && !name.startsWith("GATEHOUSE_TEST_"))
    .map((name) => {
      const meant = nearestSetting(name, known);
      return `${name} is not a Gatehouse setting and is ignored (${meant === null ? "misspelt?" : `did you mean ${meant}?`})`;
    });
  if (options.usingStore ?? true) problems.unshift(...storeProblems);
  if (serving) problems.unshift(...listenProblems);
  if (problems.length > 0 || auth === null) throw new ConfigError(problems, warnings);
  return {
    warnings,
    port,
    host,
    dataDir,
    issuer: issuer.replace(/\/$/, ""),
    issuerSet: explicitIssuer !== undefined,
    tls,
    trustedProxies,
    logLevel,
    keys: { prefix, maxLifetimeSeconds, allowNoExpiry, defaultRateLimit, maxGracePeriodSeconds: 30 * 86400 },
    usageFlushMs,
    threadPoolNice,
    bodyLimitBytes,
    githubSecretScanning: { keysUrl, keysJson },
    auth,
    databaseUrl,
    redisUrl,
    rateLimitFailClosed,
    retention,
    housekeepingIntervalSeconds,
  };
}
