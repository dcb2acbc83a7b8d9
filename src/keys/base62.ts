const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Encodes an unsigned integer in base62, left-padded with "0" to `width` characters. */
export function encodeBase62(value: bigint, width: number): string {
  if (value < 0n) throw new TypeError("encodeBase62: value must not be negative");
  const digits: string[] = [];
  let rest = value;
  // Peel off 8 digits per bigint division (62^8 < 2^53, so a chunk is an exact double)
  // and split each chunk with plain numbers: bigint division is the slow part.
  while (rest >= CHUNK) {
    let chunk = Number(rest % CHUNK);
    rest /= CHUNK;
    for (let i = 0; i < CHUNK_DIGITS; i++) {
      digits.push(ALPHABET[chunk % 62] as string);
      chunk = Math.floor(chunk / 62);
    }
  }
  for (let last = Number(rest); last > 0; last = Math.floor(last / 62)) digits.push(ALPHABET[last % 62] as string);
  while (digits.length > 0 && digits[digits.length - 1] === "0") digits.pop();
  if (digits.length > width) throw new TypeError(`encodeBase62: value does not fit in ${width} characters`);
  return digits.reverse().join("").padStart(width, "0");
}

const CHUNK_DIGITS = 8;
const CHUNK = 62n ** 8n;

/** Encodes bytes as one big-endian unsigned integer in base62. */
export function bytesToBase62(bytes: Uint8Array, width: number): string {
  const hex = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
  return encodeBase62(hex === "" ? 0n : BigInt(`0x${hex}`), width);
}

export const BASE62_CHARS = ALPHABET;
