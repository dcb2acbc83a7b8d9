import { BASE62_CHARS } from "./base62.ts";

/**
 * Key ids (lib/ids.ts: `key_` + 12 hex digits of creation time + 15 base62 characters)
 * packed into 18 bytes: 6 for the time, 12 for the 15 six-bit digits. The in-memory key
 * index keeps a million of them, where a JavaScript string each would cost ~50 bytes and
 * a million objects for the garbage collector to trace.
 */
export const PACKED_ID_BYTES = 18;
const ID_LENGTH = 31;
const STANDARD_ID = /^key_[0-9a-f]{12}[0-9A-Za-z]{15}$/;
const HEX_CODES = Buffer.from("0123456789abcdef", "latin1");
const DIGIT_CODES = Buffer.from(BASE62_CHARS, "latin1");
const DIGIT_VALUES = (() => {
  const values = new Uint8Array(128);
  for (let i = 0; i < BASE62_CHARS.length; i++) values[BASE62_CHARS.charCodeAt(i)] = i;
  return values;
})();
/** Hex digits' values; the id's form is checked before they are read. */
const HEX_VALUES = (() => {
  const values = new Uint8Array(128);
  for (let i = 0; i < 16; i++) values[HEX_CODES[i] as number] = i;
  return values;
})();
const scratch = Buffer.alloc(ID_LENGTH);
scratch.write("key_", 0, "latin1");

/** Writes `id` packed at `at`; false (nothing written) when it is not of the standard form. */
export function packId(id: string, out: Buffer, at: number): boolean {
  if (!STANDARD_ID.test(id)) return false;
  // Character codes, not slices: the usage recorder packs an id on every verification.
  for (let i = 0; i < 6; i++) {
    const high = HEX_VALUES[id.charCodeAt(4 + 2 * i)] as number;
    out[at + i] = (high << 4) | (HEX_VALUES[id.charCodeAt(5 + 2 * i)] as number);
  }
  let bits = 0;
  let pending = 0;
  let o = at + 6;
  for (let i = 16; i < ID_LENGTH; i++) {
    pending = (pending << 6) | (DIGIT_VALUES[id.charCodeAt(i)] as number);
    bits += 6;
    while (bits >= 8) {
      bits -= 8;
      out[o++] = (pending >> bits) & 0xff;
    }
    pending &= (1 << bits) - 1;
  }
  // 15 × 6 = 90 bits: 11 whole bytes and 2 bits, left-aligned in the last byte.
  out[o] = (pending << (8 - bits)) & 0xff;
  return true;
}

/** The id packed at `at`. */
export function unpackId(packed: Buffer, at: number): string {
  for (let i = 0; i < 6; i++) {
    const byte = packed[at + i] as number;
    scratch[4 + 2 * i] = HEX_CODES[byte >> 4] as number;
    scratch[5 + 2 * i] = HEX_CODES[byte & 15] as number;
  }
  let bits = 0;
  let pending = 0;
  let p = at + 6;
  for (let o = 16; o < ID_LENGTH; o++) {
    if (bits < 6) {
      pending = (pending << 8) | (packed[p++] as number);
      bits += 8;
    }
    bits -= 6;
    scratch[o] = DIGIT_CODES[(pending >> bits) & 63] as number;
    pending &= (1 << bits) - 1;
  }
  return scratch.toString("latin1", 0, ID_LENGTH);
}
