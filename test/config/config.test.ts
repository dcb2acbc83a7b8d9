import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, describe, test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config/config.ts";
import { tempDir } from "../support/backends.ts";

/** The problems loadConfig reports for `env`; fails the test if it reports none. */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`);
}

const dir = tempDir("gatehouse-config-");
const certFile = join(dir, "cert.pem");
const keyFile = join(dir, "key.pem");
writeFileSync(certFile, "not checked here: the server reads it\n");
writeFileSync(keyFile, "not checked here\n");

function githubKeys(namedCurve: string | null): string {
  const pair =
    namedCurve === null
      ? generateKeyPairSync("rsa", { modulusLength: 2048 })
      : generateKeyPairSync("ec", { namedCurve });
  return JSON.stringify({
    public_keys: [
      { key_identifier: "k1", key: pair.publicKey.export({ type: "spki", format: "pem" }), is_current: true },
    ],
  });
}

const GITHUB_KEYS_SHAPE =
  'GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS must be JSON in the shape of GitHub\'s public-keys endpoint, {"public_keys": [{"key_identifier": "…", "key": "<PEM>"}]}, with at least one ECDSA P-256 key';

describe("loadConfig", () => {
  after(() => rmSync(dir, { recursive: true, force: true }));

  test("defaults: loopback HTTP on 8080, ./data, 90-day keys, 1000/60 s, 64 KiB bodies", () => {
    const config = loadConfig({});
    assert.equal(config.port, 8080);
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.dataDir, resolve("./data"));
    assert.equal(config.issuer, "http://127.0.0.1:8080");
    assert.equal(config.tls, null);
    assert.deepEqual(config.trustedProxies, []);
    assert.equal(config.logLevel, "info");
    assert.deepEqual(config.keys, {
      prefix: "gate",
      maxLifetimeSeconds: 90 * 86400,
      allowNoExpiry: false,
      defaultRateLimit: { limit: 1000, windowSeconds: 60 },
      maxGracePeriodSeconds: 30 * 86400,
    });
    assert.equal(config.usageFlushMs, 5000);
    assert.deepEqual(config.retention, { endedKeysDays: 30, usageDays: 90, usageMinuteDays: 7, auditDays: 365 });
    assert.equal(config.bodyLimitBytes, 64 * 1024);
    assert.deepEqual(config.githubSecretScanning, {
      keysUrl: "https://api.github.com/meta/public_keys/secret_scanning",
      keysJson: null,
    });
  });

  // Issue 3's defaults: 15-minute access tokens, 7-day refresh tokens (the idle limit the
  // same unless lowered), argon2id at OWASP's minimum, 8-character passwords, RS256, no
  // public sign-up. Each is a promise in the docs; a changed default must be a decision.
  test("auth defaults: 900 s access, 7-day refresh, argon2id m=19 MiB t=2 p=1, min 8, RS256, no sign-up", () => {
    const { auth } = loadConfig({});
    assert.equal(auth.accessTokenSeconds, 900);
    assert.equal(auth.refreshTokenSeconds, 7 * 86400);
    assert.equal(auth.refreshTokenIdleSeconds, 7 * 86400);
    assert.equal(auth.sessionSeconds, 12 * 3600);
    assert.equal(auth.sessionIdleSeconds, 30 * 60);
    assert.deepEqual(auth.password.argon2, { memoryKiB: 19456, timeCost: 2, parallelism: 1 });
    assert.equal(auth.password.minLength, 8);
    assert.equal(auth.signing.algorithm, "RS256");
    assert.equal(auth.signing.rotationDays, 0);
    assert.equal(auth.signupEnabled, false);
    assert.equal(auth.audience, "http://127.0.0.1:8080");
    // The idle limit follows a shorter absolute limit down, and can be set below it.
    const shorter = loadConfig({ GATEHOUSE_REFRESH_TOKEN_SECONDS: "86400" }).auth;
    assert.equal(shorter.refreshTokenIdleSeconds, 86400);
    const idle = loadConfig({ GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS: "3600" }).auth;
    assert.deepEqual([idle.refreshTokenSeconds, idle.refreshTokenIdleSeconds], [7 * 86400, 3600]);
    assert.deepEqual(
      problemsOf({ GATEHOUSE_REFRESH_TOKEN_SECONDS: "3600", GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS: "7200" }),
      ["GATEHOUSE_REFRESH_TOKEN_IDLE_SECONDS must not exceed GATEHOUSE_REFRESH_TOKEN_SECONDS"],
    );
  });

  test("blank values count as unset, and values are trimmed", () => {
    const config = loadConfig({ GATEHOUSE_PORT: "  ", GATEHOUSE_HOST: "", GATEHOUSE_KEY_PREFIX: " acme " });
    assert.equal(config.port, 8080);
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.keys.prefix, "acme");
  });

  test("every setting is read", () => {
    const config = loadConfig({
      GATEHOUSE_PORT: "0",
      GATEHOUSE_HOST: "::1",
      GATEHOUSE_DATA_DIR: dir,
      GATEHOUSE_LOG_LEVEL: "warn",
      GATEHOUSE_KEY_PREFIX: "acme2",
      GATEHOUSE_KEY_MAX_LIFETIME_SECONDS: "3600",
      GATEHOUSE_KEY_ALLOW_NO_EXPIRY: "true",
      GATEHOUSE_DEFAULT_RATE_LIMIT: "50/10s",
      GATEHOUSE_USAGE_FLUSH_MS: "50",
      GATEHOUSE_BODY_LIMIT_BYTES: "1024",
      GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: "http://127.0.0.1:9/keys",
    });
    assert.equal(config.port, 0);
    assert.equal(config.issuer, "http://[::1]:0");
    assert.equal(config.dataDir, dir);
    assert.equal(config.logLevel, "warn");
    assert.equal(config.keys.prefix, "acme2");
    assert.equal(config.keys.maxLifetimeSeconds, 3600);
    assert.equal(config.keys.allowNoExpiry, true);
    assert.deepEqual(config.keys.defaultRateLimit, { limit: 50, windowSeconds: 10 });
    assert.equal(config.usageFlushMs, 50);
    assert.equal(config.bodyLimitBytes, 1024);
    assert.equal(config.githubSecretScanning.keysUrl, "http://127.0.0.1:9/keys");
  });

  test("TLS: both files give https; the issuer follows", () => {
    const config = loadConfig({
      GATEHOUSE_HOST: "10.1.2.3",
      GATEHOUSE_TLS_CERT_FILE: certFile,
      GATEHOUSE_TLS_KEY_FILE: keyFile,
    });
    assert.deepEqual(config.tls, { certFile, keyFile });
    assert.equal(config.issuer, "https://10.1.2.3:8080");
  });

  test("a wildcard host needs the public issuer spelt out", () => {
    const env = { GATEHOUSE_HOST: "0.0.0.0", GATEHOUSE_TLS_CERT_FILE: certFile, GATEHOUSE_TLS_KEY_FILE: keyFile };
    assert.throws(() => loadConfig(env), /GATEHOUSE_HOST is the wildcard address 0\.0\.0\.0: set GATEHOUSE_ISSUER/);
    assert.equal(
      loadConfig({ ...env, GATEHOUSE_ISSUER: "https://auth.example.com" }).issuer,
      "https://auth.example.com",
    );
  });

  test("unknown GATEHOUSE_ variables are warned about, not silently ignored", () => {
    const config = loadConfig({ GATEHOUSE_PROT: "9000", GATEHOUSE_PORT: "9001" });
    assert.deepEqual(config.warnings, [
      "GATEHOUSE_PROT is not a Gatehouse setting and is ignored (did you mean GATEHOUSE_PORT?)",
    ]);
    assert.equal(config.port, 9001);
  });

  test("the warning names the setting a misspelling was close to, and guesses nothing when none is", () => {
    const config = loadConfig({
      GATEHOUSE_LOG_LEVL: "debug",
      GATEHOUSE_TROP: "9000",
      GATEHOUSE_COLOUR: "blue",
    });
    assert.deepEqual(config.warnings, [
      "GATEHOUSE_LOG_LEVL is not a Gatehouse setting and is ignored (did you mean GATEHOUSE_LOG_LEVEL?)",
      // The same letters in another order: four edits away, still meant PORT.
      "GATEHOUSE_TROP is not a Gatehouse setting and is ignored (did you mean GATEHOUSE_PORT?)",
      "GATEHOUSE_COLOUR is not a Gatehouse setting and is ignored (misspelt?)",
    ]);
  });

  test("when the start is refused, unknown GATEHOUSE_ variables are listed after the problems, as warnings", () => {
    assert.throws(
      () => loadConfig({ GATEHOUSE_PORT: "99999", GATEHOUSE_MASTERKEY: "x" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 1);
        assert.ok(error.problems[0]?.startsWith("GATEHOUSE_PORT"));
        const warning =
          "GATEHOUSE_MASTERKEY is not a Gatehouse setting and is ignored (did you mean GATEHOUSE_MASTER_KEY?)";
        assert.deepEqual(error.warnings, [warning]);
        // The message lists the warning under its own heading, after the problems.
        const lines = error.message.split("\n");
        assert.equal(lines[0], "Invalid configuration:");
        assert.ok(lines[1]?.startsWith("  - GATEHOUSE_PORT"));
        assert.deepEqual(lines.slice(2), ["Also, perhaps the cause:", `  - ${warning}`]);
        return true;
      },
    );
  });

  test("a trusted proxy allows a public interface; IPv6 hosts are bracketed in the issuer", () => {
    const config = loadConfig({
      GATEHOUSE_HOST: "fd00::5",
      GATEHOUSE_TRUSTED_PROXIES: "10.0.0.0/8, fd00::/8 ,192.168.1.1",
    });
    assert.deepEqual(config.trustedProxies, ["10.0.0.0/8", "fd00::/8", "192.168.1.1"]);
    assert.equal(config.issuer, "https://[fd00::5]:8080");
    assert.equal(loadConfig({ GATEHOUSE_ISSUER: "https://auth.example.com/" }).issuer, "https://auth.example.com");
  });

  test("GitHub public keys given inline must hold a P-256 key", () => {
    assert.equal(
      loadConfig({ GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS: githubKeys("prime256v1") }).githubSecretScanning.keysJson !==
        null,
      true,
    );
    for (const value of ["{", "[]", '{"public_keys":[]}', '{"public_keys":[{"key_identifier":"a","key":"nope"}]}']) {
      assert.deepEqual(problemsOf({ GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS: value }), [GITHUB_KEYS_SHAPE], value);
    }
    assert.deepEqual(problemsOf({ GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS: githubKeys(null) }), [GITHUB_KEYS_SHAPE]);
    assert.deepEqual(problemsOf({ GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS: githubKeys("secp384r1") }), [
      GITHUB_KEYS_SHAPE,
    ]);
  });

  const cases: Array<[string, Record<string, string>, string[]]> = [
    [
      "port not a number",
      { GATEHOUSE_PORT: "abc" },
      ['GATEHOUSE_PORT must be a whole number from 0 to 65535 (got "abc")'],
    ],
    [
      "port too large",
      { GATEHOUSE_PORT: "65536" },
      ['GATEHOUSE_PORT must be a whole number from 0 to 65535 (got "65536")'],
    ],
    ["port negative", { GATEHOUSE_PORT: "-1" }, ['GATEHOUSE_PORT must be a whole number from 0 to 65535 (got "-1")']],
    [
      "port fractional",
      { GATEHOUSE_PORT: "80.5" },
      ['GATEHOUSE_PORT must be a whole number from 0 to 65535 (got "80.5")'],
    ],
    [
      "host a name",
      { GATEHOUSE_HOST: "example.com" },
      ['GATEHOUSE_HOST must be an IP address or "localhost" (got "example.com")'],
    ],
    [
      "public host without TLS",
      { GATEHOUSE_HOST: "0.0.0.0" },
      [
        "GATEHOUSE_HOST is 0.0.0.0, which is not loopback, and there is no TLS: set GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE, or name the TLS-terminating proxy in front of Gatehouse with GATEHOUSE_TRUSTED_PROXIES",
      ],
    ],
    [
      "public IPv6 host without TLS",
      { GATEHOUSE_HOST: "::" },
      [
        "GATEHOUSE_HOST is ::, which is not loopback, and there is no TLS: set GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE, or name the TLS-terminating proxy in front of Gatehouse with GATEHOUSE_TRUSTED_PROXIES",
      ],
    ],
    [
      "TLS certificate without key",
      { GATEHOUSE_TLS_CERT_FILE: certFile },
      ["GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE must be set together"],
    ],
    [
      "TLS key without certificate, on a public host",
      { GATEHOUSE_HOST: "0.0.0.0", GATEHOUSE_TLS_KEY_FILE: keyFile },
      ["GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE must be set together"],
    ],
    [
      "TLS files that do not exist",
      { GATEHOUSE_TLS_CERT_FILE: join(dir, "missing.pem"), GATEHOUSE_TLS_KEY_FILE: dir },
      [
        `GATEHOUSE_TLS_CERT_FILE: cannot read the file "${join(dir, "missing.pem")}"`,
        `GATEHOUSE_TLS_KEY_FILE: cannot read the file "${dir}"`,
      ],
    ],
    [
      "trusted proxies that are not addresses",
      { GATEHOUSE_TRUSTED_PROXIES: "proxy.local,10.0.0.0/33,::1/129,1.2.3.4/8/1,10.0.0.1/x" },
      [
        'GATEHOUSE_TRUSTED_PROXIES: "proxy.local" is not an IP address or CIDR range',
        'GATEHOUSE_TRUSTED_PROXIES: "10.0.0.0/33" is not an IP address or CIDR range',
        'GATEHOUSE_TRUSTED_PROXIES: "::1/129" is not an IP address or CIDR range',
        'GATEHOUSE_TRUSTED_PROXIES: "1.2.3.4/8/1" is not an IP address or CIDR range',
        'GATEHOUSE_TRUSTED_PROXIES: "10.0.0.1/x" is not an IP address or CIDR range',
      ],
    ],
    [
      "issuer over http",
      { GATEHOUSE_ISSUER: "http://auth.example.com" },
      ['GATEHOUSE_ISSUER must be an https URL (http only on loopback) (got "http://auth.example.com")'],
    ],
    [
      "issuer over http to a name that merely starts with 127.",
      { GATEHOUSE_ISSUER: "http://127.0.0.1.example.com" },
      ['GATEHOUSE_ISSUER must be an https URL (http only on loopback) (got "http://127.0.0.1.example.com")'],
    ],
    [
      "GitHub keys URL over http to a name that merely starts with 127.",
      { GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: "http://127.0.0.1.example.com/keys" },
      [
        'GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL must be an https URL (http only on loopback) (got "http://127.0.0.1.example.com/keys")',
      ],
    ],
    [
      "issuer with a query",
      { GATEHOUSE_ISSUER: "https://auth.example.com/?tenant=1" },
      ["GATEHOUSE_ISSUER must not have a query or fragment"],
    ],
    [
      "issuer not a URL",
      { GATEHOUSE_ISSUER: "auth.example.com" },
      ['GATEHOUSE_ISSUER must be a URL (got "auth.example.com")'],
    ],
    [
      "log level",
      { GATEHOUSE_LOG_LEVEL: "loud" },
      ['GATEHOUSE_LOG_LEVEL must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
    ],
    [
      "key prefix",
      { GATEHOUSE_KEY_PREFIX: "Gate_" },
      ['GATEHOUSE_KEY_PREFIX must be 2–12 lowercase letters or digits starting with a letter (got "Gate_")'],
    ],
    [
      "key lifetime",
      { GATEHOUSE_KEY_MAX_LIFETIME_SECONDS: "10" },
      ['GATEHOUSE_KEY_MAX_LIFETIME_SECONDS must be a whole number from 60 to 315360000 (got "10")'],
    ],
    [
      "boolean",
      { GATEHOUSE_KEY_ALLOW_NO_EXPIRY: "yes" },
      ['GATEHOUSE_KEY_ALLOW_NO_EXPIRY must be true or false (got "yes")'],
    ],
    [
      "rate limit shape",
      { GATEHOUSE_DEFAULT_RATE_LIMIT: "fast" },
      ['GATEHOUSE_DEFAULT_RATE_LIMIT must read <limit>/<window seconds>, e.g. 1000/60 (got "fast")'],
    ],
    [
      "rate limit zero",
      { GATEHOUSE_DEFAULT_RATE_LIMIT: "0/60" },
      ['GATEHOUSE_DEFAULT_RATE_LIMIT must read <limit>/<window seconds>, e.g. 1000/60 (got "0/60")'],
    ],
    [
      "usage flush interval",
      { GATEHOUSE_USAGE_FLUSH_MS: "1" },
      ['GATEHOUSE_USAGE_FLUSH_MS must be a whole number from 50 to 60000 (got "1")'],
    ],
    [
      "minute retention longer than the usage retention",
      { GATEHOUSE_RETENTION_USAGE_DAYS: "30", GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS: "31" },
      [
        "GATEHOUSE_RETENTION_USAGE_MINUTE_DAYS (31) cannot be more than GATEHOUSE_RETENTION_USAGE_DAYS (30): usage is kept per minute within the usage retention",
      ],
    ],
    [
      "body limit",
      { GATEHOUSE_BODY_LIMIT_BYTES: "100" },
      ['GATEHOUSE_BODY_LIMIT_BYTES must be a whole number from 1024 to 10485760 (got "100")'],
    ],
    [
      "GitHub keys URL over http",
      { GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: "http://keys.example.com/" },
      [
        'GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL must be an https URL (http only on loopback) (got "http://keys.example.com/")',
      ],
    ],
    [
      "GitHub keys URL not a URL",
      { GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL: "keys" },
      ['GATEHOUSE_GITHUB_SECRET_SCANNING_KEYS_URL must be a URL (got "keys")'],
    ],
  ];
  for (const [name, env, expected] of cases) {
    test(`one message per mistake: ${name}`, () => {
      assert.deepEqual(problemsOf(env), expected);
    });
  }

  // Regression: Buffer.from(…, "base64") skips characters outside the alphabet, so a
  // mangled GATEHOUSE_MASTER_KEY decoded to 32 bytes all the same and passed.
  test("GATEHOUSE_MASTER_KEY must be base64 of 32 bytes and nothing else", () => {
    const valid = Buffer.alloc(32, 7).toString("base64");
    const expected = [
      "GATEHOUSE_MASTER_KEY must be base64 of exactly 32 random bytes and nothing else (openssl rand -base64 32)",
    ];
    for (const mangled of [`!!!!${valid}`, `${valid}!`, `${valid.slice(0, 20)} ${valid.slice(20)}`, `${valid}==`]) {
      assert.deepEqual(problemsOf({ GATEHOUSE_MASTER_KEY: mangled }), expected, mangled);
    }
    assert.deepEqual(loadConfig({ GATEHOUSE_MASTER_KEY: valid }).auth.masterKey, { base64: valid });
    // Unpadded and base64url (as Buffer.from always read them) still pass.
    const url = Buffer.alloc(32, 0xfb).toString("base64url");
    assert.deepEqual(loadConfig({ GATEHOUSE_MASTER_KEY: url }).auth.masterKey, { base64: url });
  });

  // Regression: the first mkdir under it said `EEXIST: file already exists, mkdir '/etc/passwd'`.
  test("GATEHOUSE_DATA_DIR that is a file: said so, except to a command that opens no store", () => {
    assert.deepEqual(problemsOf({ GATEHOUSE_DATA_DIR: certFile }), [
      `GATEHOUSE_DATA_DIR must be a folder, but ${certFile} is a file`,
    ]);
    assert.equal(loadConfig({ GATEHOUSE_DATA_DIR: certFile }, { usingStore: false }).dataDir, certFile);
  });

  test("several mistakes are reported together, one line each", () => {
    const env = Object.assign({}, ...cases.slice(0, 1).map(([, e]) => e), {
      GATEHOUSE_HOST: "0.0.0.0",
      GATEHOUSE_LOG_LEVEL: "loud",
      GATEHOUSE_KEY_PREFIX: "X",
    });
    const problems = problemsOf(env);
    assert.equal(problems.length, 4);
    try {
      loadConfig(env);
    } catch (error) {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.message, `Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
      assert.equal(error.message.split("\n").length, 5);
    }
  });
});
