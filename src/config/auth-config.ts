import { decodeHs256Secret } from "../../sdk/src/token-signature.ts";
import { parseMasterKey } from "../signing/master-key.ts";
import type { SigningAlgorithm } from "../storage/types.ts";
import { DEFAULT_MAX_WAITING } from "../users/password-hasher.ts";

/** Settings for users, passwords, tokens, sessions and signing keys (docs/auth.md). */
export interface AuthConfig {
  /** Master key for sealing private signing keys: base64 of 32 bytes, or a file holding it. */
  masterKey: { base64: string } | { file: string } | null;
  signing: {
    algorithm: SigningAlgorithm;
    /** HS256 only: the shared secret (at least 256 bits). */
    hs256Secret: Buffer | null;
    /** Rotate the signing key automatically this often; 0: only by hand. */
    rotationDays: number;
  };
  /** `aud` of access tokens; defaults to the issuer. */
  audience: string;
  /** `client_id` of tokens issued to first-party apps through /auth/login. */
  clientId: string;
  accessTokenSeconds: number;
  refreshTokenSeconds: number;
  refreshTokenIdleSeconds: number;
  sessionSeconds: number;
  sessionIdleSeconds: number;
  password: {
    minLength: number;
    /** zxcvbn score (0–4) a new password must reach. */
    minScore: number;
    argon2: { memoryKiB: number; timeCost: number; parallelism: number };
    /** Password checks that may wait for a hashing slot; past it, 503 BUSY. */
    maxWaiting: number;
  };
  signupEnabled: boolean;
  /** Origins allowed to send cookie-authenticated state-changing requests. */
  allowedOrigins: string[];
  login: {
    /** Failures per account, then per address, before delays start. */
    freeFailuresPerAccount: number;
    freeFailuresPerIp: number;
    /** Delays double with each further failure, up to this. */
    maxDelaySeconds: number;
    /**
     * How long an address stays known for an account after a sign-in from it; a known
     * address is not refused by the account's own brake (src/users/login-throttle.ts).
     * At most 24: the in-memory store expires entries with a timer, and Node's timers
     * cannot reach 25 days (2^31 ms).
     */
    knownAddressDays: number;
  };
}

type Read = (name: string) => string | undefined;
type Integer = (name: string, fallback: number, min: number, max: number) => number;
type Bool = (name: string) => boolean;

const ALGORITHMS: readonly SigningAlgorithm[] = ["RS256", "ES256", "EdDSA", "HS256"];
const DAY = 86400;

export function loadAuthConfig(
  env: { read: Read; integer: Integer; boolean: Bool },
  issuer: string,
  problems: string[],
): AuthConfig {
  const { read, integer, boolean } = env;

  const masterBase64 = read("GATEHOUSE_MASTER_KEY");
  const masterFile = read("GATEHOUSE_MASTER_KEY_FILE");
  if (masterBase64 !== undefined && masterFile !== undefined) {
    problems.push("set GATEHOUSE_MASTER_KEY or GATEHOUSE_MASTER_KEY_FILE, not both");
  }
  if (masterBase64 !== undefined && parseMasterKey(masterBase64) === null) {
    problems.push(
      "GATEHOUSE_MASTER_KEY must be base64 of exactly 32 random bytes and nothing else (openssl rand -base64 32)",
    );
  }
  const masterKey = masterBase64 ? { base64: masterBase64 } : masterFile ? { file: masterFile } : null;

  const algorithm = (read("GATEHOUSE_JWT_ALG") ?? "RS256") as SigningAlgorithm;
  if (!ALGORITHMS.includes(algorithm)) {
    problems.push(`GATEHOUSE_JWT_ALG must be one of ${ALGORITHMS.join(", ")} (got "${algorithm}")`);
  }
  let hs256Secret: Buffer | null = null;
  const rawSecret = read("GATEHOUSE_JWT_HS256_SECRET");
  if (algorithm === "HS256") {
    const decoded = rawSecret === undefined ? null : decodeHs256Secret(rawSecret);
    // RFC 7518 §3.2: the key must be at least as long as the hash output (256 bits).
    if (decoded === null || decoded.length < 32) {
      problems.push(
        "GATEHOUSE_JWT_ALG=HS256 needs GATEHOUSE_JWT_HS256_SECRET: base64 or base64url of at least 32 random bytes (256 bits)",
      );
    } else {
      hs256Secret = decoded;
    }
  } else if (rawSecret !== undefined) {
    problems.push("GATEHOUSE_JWT_HS256_SECRET is only used with GATEHOUSE_JWT_ALG=HS256; remove it");
  }
  const rotationDays = integer("GATEHOUSE_SIGNING_KEY_ROTATION_DAYS", 0, 0, 3650);

  const audience = read("GATEHOUSE_JWT_AUDIENCE") ?? issuer.replace(/\/$/, "");
  const clientId = read("GATEHOUSE_FIRST_PARTY_CLIENT_ID") ?? "gatehouse";
  const accessTokenSeconds = integer("GATEHOUSE_ACCESS_TOKEN_SECONDS", 900, 60, 3600);
  const refreshTokenSeconds = integer("GATEHOUSE_REFRESH_TOKEN_SECONDS", 7 * DAY, 300, 90 * DAY);
  const refreshTokenIdleSeconds = integer("GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS", refreshTokenSeconds, 60, 90 * DAY);
  if (refreshTokenIdleSeconds > refreshTokenSeconds) {
    problems.push("GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS must not exceed GATEHOUSE_REFRESH_TOKEN_SECONDS");
  }
  const sessionSeconds = integer("GATEHOUSE_SESSION_SECONDS", 12 * 3600, 300, 30 * DAY);
  const sessionIdleSeconds = integer("GATEHOUSE_SESSION_IDLE_SECONDS", 30 * 60, 60, 30 * DAY);
  if (sessionIdleSeconds > sessionSeconds) {
    problems.push("GATEHOUSE_SESSION_IDLE_SECONDS must not exceed GATEHOUSE_SESSION_SECONDS");
  }

  // NIST SP 800-63B §5.1.1.2: at least 8; operators may require more, never less.
  const minLength = integer("GATEHOUSE_PASSWORD_MIN_LENGTH", 8, 8, 64);
  const minScore = integer("GATEHOUSE_PASSWORD_MIN_SCORE", 2, 0, 4);
  // OWASP Password Storage Cheat Sheet: argon2id with m=19 MiB, t=2, p=1 at least.
  const memoryKiB = integer("GATEHOUSE_ARGON2_MEMORY_KIB", 19456, 19456, 4 * 1024 * 1024);
  const timeCost = integer("GATEHOUSE_ARGON2_TIME_COST", 2, 2, 20);
  const parallelism = integer("GATEHOUSE_ARGON2_PARALLELISM", 1, 1, 16);
  const maxWaiting = integer("GATEHOUSE_ARGON2_MAX_WAITING", DEFAULT_MAX_WAITING, 0, 100_000);

  const signupEnabled = boolean("GATEHOUSE_SIGNUP_ENABLED");

  const allowedOrigins = (read("GATEHOUSE_ALLOWED_ORIGINS") ?? new URL(issuer).origin)
    .split(",")
    .map((entry) => entry.trim())
    .filter(Boolean);
  for (const origin of allowedOrigins) {
    let parsed: URL | null = null;
    try {
      parsed = new URL(origin);
    } catch {}
    if (!parsed || parsed.origin !== origin) {
      problems.push(`GATEHOUSE_ALLOWED_ORIGINS: "${origin}" is not an origin (scheme://host[:port], no path)`);
    }
  }

  const freeFailuresPerAccount = integer("GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT", 5, 1, 1000);
  const freeFailuresPerIp = integer("GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP", 20, 1, 100_000);
  const maxDelaySeconds = integer("GATEHOUSE_LOGIN_MAX_DELAY_SECONDS", 900, 1, 86400);
  const knownAddressDays = integer("GATEHOUSE_LOGIN_KNOWN_ADDRESS_DAYS", 21, 1, 24);

  return {
    masterKey,
    signing: { algorithm, hs256Secret, rotationDays },
    audience,
    clientId,
    accessTokenSeconds,
    refreshTokenSeconds,
    refreshTokenIdleSeconds,
    sessionSeconds,
    sessionIdleSeconds,
    password: { minLength, minScore, argon2: { memoryKiB, timeCost, parallelism }, maxWaiting },
    signupEnabled,
    allowedOrigins,
    login: { freeFailuresPerAccount, freeFailuresPerIp, maxDelaySeconds, knownAddressDays },
  };
}
