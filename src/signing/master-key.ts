import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { decodeHs256Secret } from "../../sdk/src/token-signature.ts";
import type { AuthConfig } from "../config/auth-config.ts";

/** Raised when the master key cannot be had; the server refuses to start. */
export class MasterKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MasterKeyError";
  }
}

/**
 * The master key `text` holds (surrounding whitespace aside), or null when it is not base64
 * (or base64url) of exactly 32 bytes. Strict, as the HS256 secret is read: Buffer.from(…,
 * "base64") skips characters outside the alphabet, so `!!!!<a valid key>` decoded to the
 * same 32 bytes and a mangled setting passed.
 */
export function parseMasterKey(text: string): Buffer | null {
  const key = decodeHs256Secret(text.trim());
  return key?.length === 32 ? key : null;
}

function decode(text: string, where: string): Buffer {
  const key = parseMasterKey(text);
  if (key === null) throw new MasterKeyError(`${where} must hold base64 of exactly 32 bytes, and nothing else`);
  return key;
}

function readKeyFile(path: string): Buffer {
  const info = statSync(path);
  if (info.isDirectory()) throw new MasterKeyError(`${path} is a directory, not a master key file`);
  if (!info.isFile()) throw new MasterKeyError(`${path} is not a regular file`);
  const mode = info.mode & 0o777;
  // Like ssh with private keys: a key file others can read is refused, not used.
  if ((mode & 0o077) !== 0) {
    throw new MasterKeyError(`${path} is readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
  }
  return decode(readFileSync(path, "utf8"), path);
}

export interface LoadMasterKeyOptions {
  /**
   * What to do when the default `<dataDir>/master.key` does not exist: `create` a new
   * key there (a store with no sealed signing keys yet, or a deliberate reset), or
   * `refuse` (the store holds keys sealed under the missing one: a new key could not
   * unseal them, and would sit where the operator is about to restore the backup).
   */
  ifMissing: "create" | "refuse";
}

/**
 * The 256-bit key that seals private signing keys at rest. From GATEHOUSE_MASTER_KEY,
 * else GATEHOUSE_MASTER_KEY_FILE, else `<dataDir>/master.key`, created on first use with
 * mode 0600. Keep a backup apart from the database: without it the signing keys are lost
 * (`gatehouse keys reset-signing` replaces them; refresh tokens and sessions do not depend
 * on them, but keys derived from the master key change: docs/auth.md).
 */
export function loadMasterKey(
  config: { dataDir: string; auth: Pick<AuthConfig, "masterKey"> },
  options: LoadMasterKeyOptions,
): Buffer {
  const source = config.auth.masterKey;
  if (source && "base64" in source) return decode(source.base64, "GATEHOUSE_MASTER_KEY");
  if (source && "file" in source) return readKeyFile(source.file);
  const path = join(config.dataDir, "master.key");
  if (options.ifMissing === "refuse") {
    try {
      return readKeyFile(path);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      throw new MasterKeyError(
        `the master key file ${path} is missing, and the store holds signing keys sealed under it. Restore the file from your backup (or point GATEHOUSE_MASTER_KEY_FILE at it); if it is lost for good, \`gatehouse keys reset-signing --yes\` replaces the signing keys under a new master key (access tokens already issued stop verifying). No new key file was created.`,
      );
    }
  }
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
