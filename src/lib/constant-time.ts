import { timingSafeEqual } from "node:crypto";

/**
 * True when `presented` is the string `expected`, compared in constant time. The lengths
 * compared are the UTF-8 byte lengths (`timingSafeEqual` throws on buffers of different
 * lengths, and a string's `length` counts UTF-16 units: 43 characters of "é" are 86
 * bytes). Anything but a string is false. Only the expected length can leak, which is
 * public for every secret Gatehouse compares this way (fixed-size tokens).
 */
export function sameSecret(expected: string, presented: unknown): boolean {
  if (typeof presented !== "string") return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}
