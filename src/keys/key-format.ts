import { hash, randomBytes as nodeRandomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { BASE62_CHARS, bytesToBase62, encodeBase62 } from "./base62.ts";

/**
 * The Gatehouse API key format (see docs/key-format.md):
 *
 *   <prefix>_<43 base62 chars: 256 random bits><6 base62 chars: CRC32>
 *
 * e.g. `gate_0h6ZsQ…` — 54 characters with the default prefix. The checksum is the
 * CRC32 (IEEE) of everything before it, `<prefix>_<random>`, as an unsigned 32-bit
 * integer in base62, zero-padded to 6 characters. It is not a security control: it lets
 * secret scanners recognise a real key offline and lets verification reject typos and
 * made-up keys without a storage round trip (GitHub's token design).
 */
export const RANDOM_BYTES = 32;
export const RANDOM_CHARS = 43; // ceil(256 / log2(62))
export const CHECKSUM_CHARS = 6; // 62^6 > 2^32
export const DEFAULT_KEY_PREFIX = "gate";

const PREFIX_PATTERN = /^[a-z][a-z0-9]{1,11}$/;

/** Characters in a key with this prefix: `<prefix>_`, the random part, the checksum. */
export function keyLength(prefix: string): number {
  return prefix.length + 1 + RANDOM_CHARS + CHECKSUM_CHARS;
}

export function assertValidPrefix(prefix: string): void {
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new TypeError("key prefix must be 2–12 lowercase letters or digits, starting with a letter");
  }
}

export function checksumOf(body: string): string {
  // Same digits as encodeBase62(BigInt(crc), 6), in plain numbers: a CRC32 fits a double
  // exactly, and this runs on every verification.
  let rest = crc32(body);
  let out = "";
  for (let i = 0; i < CHECKSUM_CHARS; i++) {
    out = BASE62_CHARS[rest % 62] + out;
    rest = Math.floor(rest / 62);
  }
  return out;
}

export type RandomBytes = (size: number) => Uint8Array;

/** Creates a new key. `randomBytes` is injectable so tests can pin the output. */
export function generateKey(prefix: string, randomBytes: RandomBytes = nodeRandomBytes): string {
  assertValidPrefix(prefix);
  const bytes = randomBytes(RANDOM_BYTES);
  // Fewer bytes would silently weaken every key; more would not fit in 43 characters.
  if (bytes.length !== RANDOM_BYTES) throw new TypeError(`randomBytes must return exactly ${RANDOM_BYTES} bytes`);
  const body = `${prefix}_${bytesToBase62(bytes, RANDOM_CHARS)}`;
  return body + checksumOf(body);
}

/**
 * Builds a pattern that finds candidate keys in free text (scanners use it). A key must
 * not touch a letter, digit or underscore on either side, so it is never found inside a
 * longer token (`my_gate_…`, `gate_…_old`). docs/key-format.md publishes the same regex.
 */
export function keyPattern(prefix: string, flags = "g"): RegExp {
  assertValidPrefix(prefix);
  return new RegExp(`(?<![A-Za-z0-9_])${prefix}_[0-9A-Za-z]{${RANDOM_CHARS + CHECKSUM_CHARS}}(?![A-Za-z0-9_])`, flags);
}

/**
 * Finds anything shaped like a key, wherever it sits, even inside a longer token: for
 * refusing and redacting credentials in URLs and logs, where a key glued to other
 * characters (`/x<key>`, a broken percent-escape before it) must not slip through. Too
 * eager for scanning free text (that is `keyPattern`); here a false match only costs a
 * refused URL or a redacted log line.
 */
export function keyAnywherePattern(prefix: string, flags = ""): RegExp {
  assertValidPrefix(prefix);
  return new RegExp(`${prefix}_[0-9A-Za-z]{${RANDOM_CHARS + CHECKSUM_CHARS}}`, flags);
}

const MAX_RANDOM = encodeBase62((1n << 256n) - 1n, RANDOM_CHARS);
const MAX_RANDOM_FIRST = MAX_RANDOM.charCodeAt(0);

/** Value of each base62 digit by character code; -1 for anything else. */
const DIGIT_VALUES = (() => {
  const values = new Int8Array(128).fill(-1);
  for (let i = 0; i < BASE62_CHARS.length; i++) values[BASE62_CHARS.charCodeAt(i)] = i;
  return values;
})();

/**
 * True when `candidate` has the shape of a key with this prefix and its checksum
 * matches. Cheap (no storage, no hashing beyond CRC32) and safe on any input. Runs on
 * every verification, so it reads characters instead of building strings.
 */
export function isWellFormedKey(candidate: unknown, prefix: string): candidate is string {
  if (typeof candidate !== "string") return false;
  const start = prefix.length + 1;
  const split = start + RANDOM_CHARS;
  if (candidate.length !== keyLength(prefix)) return false;
  if (!candidate.startsWith(prefix) || candidate.charCodeAt(prefix.length) !== 95 /* _ */) return false;
  let checksum = 0;
  for (let i = start; i < candidate.length; i++) {
    const c = candidate.charCodeAt(i);
    const value = c < 128 ? (DIGIT_VALUES[c] as number) : -1;
    if (value < 0) return false;
    if (i >= split) checksum = checksum * 62 + value;
  }
  if (crc32(candidate.slice(0, split)) !== checksum) return false;
  // 43 base62 characters hold slightly more than 256 bits; a real key never does. The
  // alphabet is in ASCII order and the width fixed, so string order is numeric order.
  return candidate.charCodeAt(start) < MAX_RANDOM_FIRST || candidate.slice(start, split) <= MAX_RANDOM;
}

/** The only form in which a key is stored: SHA-256 of the whole key string. */
export function digestKey(key: string): Buffer {
  // One-shot hash: the same bytes as createHash().update().digest(), without the Hash
  // object. Through base64 because, on Node 24, that is faster than asking for a Buffer.
  return Buffer.from(hash("sha256", key, "base64"), "base64");
}

/**
 * `digestKey` written into `out` (32 bytes) instead of a new Buffer, for the verification
 * path; returns the digest in base64 too. A new Buffer this small is cut from Node's
 * shared 8 KB pool, and at two digests a request each slab lived long enough to be
 * promoted: freed only by a full collection, the slabs grew the heap by ~0.6 MB a second
 * at 10,000 requests a second. `out` is overwritten by the next call: use it at once.
 */
export function digestKeyInto(key: string, out: Buffer): string {
  const digest = hash("sha256", key, "base64");
  out.write(digest, 0, "base64");
  return digest;
}

/** A short, non-secret label for a key: prefix, 4 characters of the body, 4 of the checksum. */
export function keyHint(key: string): string {
  const underscore = key.indexOf("_");
  return `${key.slice(0, underscore + 5)}…${key.slice(-4)}`;
}

/** A redacted form for reports: enough to tell keys apart, never enough to use one. */
export const redactKey = keyHint;

/**
 * `text` with everything shaped like a key (even glued to other characters, checksum or
 * not) cut to its hint: for printing text that is not ours, such as a file's path.
 */
export function redactKeysIn(text: string, prefix: string): string {
  return text.replace(keyAnywherePattern(prefix, "g"), keyHint);
}
