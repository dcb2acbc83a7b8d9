const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Encodes an unsigned integer in base62, left-padded with "0" to `width` characters. */
export function encodeBase62(value: bigint, width: number): string {
  if (value < 0n) throw new TypeError("encodeBase62: value must not be negative");
  let out = "";
  let rest = value;
  while (rest > 0n) {
    out = ALPHABET[Number(rest % 62n)] + out;
    rest /= 62n;
  }
  if (out.length > width) throw new TypeError(`encodeBase62: value does not fit in ${width} characters`);
  return out.padStart(width, "0");
}

/** Encodes bytes as one big-endian unsigned integer in base62. */
export function bytesToBase62(bytes: Uint8Array, width: number): string {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  return encodeBase62(value, width);
}

export const BASE62_CHARS = ALPHABET;
