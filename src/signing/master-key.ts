import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { AuthConfig } from "../config/auth-config.ts";

/** Raised when the master key cannot be had; the server refuses to start. */
export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MasterKeyError";
  }
}

function decode(text: string, where: string): Buffer {
  const key = Buffer.from(text.trim(), "base64");
  if (key.length !== 32) throw new MasterKeyError(`${where} must hold base64 of exactly 32 bytes`);
  return key;
}

function readKeyFile(path: string): Buffer {
  const mode = statSync(path).mode & 0o777;
  // Like ssh with private keys: a key file others can read is refused, not used.
  if ((mode & 0o077) !== 0) {
    throw new MasterKeyError(`${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  return decode(readFileSync(path, "utf8"), path);
}

/**
 * The 256-bit key that seals private signing keys at rest. From GATEHOUSE_MASTER_KEY,
 * else GATEHOUSE_MASTER_KEY_FILE, else `<dataDir>/master.key`, created on first use with
 * mode 0600. Keep a backup apart from the database: without it the signing keys are lost
 * (`gatehouse keys reset-signing` replaces them; refresh tokens and sessions do not depend
 * on them, but keys derived from the master key change: docs/auth.md).
 */
export function loadMasterKey(config: { dataDir: string; auth: Pick<AuthConfig, "masterKey"> }): Buffer {
  const source = config.auth.masterKey;
  if (source && "base64" in source) return decode(source.base64, "GATEHOUSE_MASTER_KEY");
  if (source && "file" in source) return readKeyFile(source.file);
  const path = join(config.dataDir, "master.key");
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // `wx`: never overwrite a key that appeared meanwhile (another process starting).
    writeFileSync(path, `${randomBytes(32).toString("base64")}\n`, { flag: "wx", mode: 0o600 });
    chmodSync(path, 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  return readKeyFile(path);
}
