import assert from "node:assert/strict";
import { test } from "node:test";
import { BASE62_CHARS, bytesToBase62, encodeBase62 } from "../../src/keys/base62.ts";

// Written from docs/key-format.md, independent of src/keys/base62.ts.
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
function reference(value: bigint, width: number): string {
  let out = "";
  for (let rest = value; rest > 0n; rest /= 62n) out = ALPHABET.charAt(Number(rest % 62n)) + out;
  return out.padStart(width, "0");
}

test("the alphabet is digits, upper case, lower case: ASCII order", () => {
  assert.equal(BASE62_CHARS, ALPHABET);
  assert.deepEqual([...BASE62_CHARS].toSorted(), [...BASE62_CHARS]);
});

test("encodeBase62 agrees with the reference at every chunk boundary", () => {
  const edges = [0n, 1n, 61n, 62n, 63n, 3843n, 3844n, 2n ** 32n - 1n, 2n ** 53n, (1n << 256n) - 1n];
  for (let k = 1n; k <= 43n; k++) edges.push(62n ** k - 1n, 62n ** k, 62n ** k + 1n);
  for (const value of edges) {
    const width = Math.max(reference(value, 0).length, 6);
    assert.equal(encodeBase62(value, width), reference(value, width), String(value));
  }
  assert.equal(encodeBase62(0n, 3), "000");
  assert.equal(encodeBase62(61n, 1), "z");
  assert.equal(encodeBase62(62n, 2), "10");
  assert.equal(encodeBase62(62n ** 8n, 9), "100000000");
  assert.equal(encodeBase62(62n ** 8n - 1n, 8), "zzzzzzzz");
});

test("values that do not fit the width, and negative values, are refused", () => {
  assert.throws(() => encodeBase62(62n, 1), TypeError);
  assert.throws(() => encodeBase62(62n ** 43n, 43), TypeError);
  assert.throws(() => encodeBase62(-1n, 6), TypeError);
});

test("bytesToBase62 reads bytes as one big-endian integer", () => {
  assert.equal(bytesToBase62(new Uint8Array(0), 2), "00");
  assert.equal(bytesToBase62(Uint8Array.of(0, 0, 0x3e), 3), "010");
  assert.equal(bytesToBase62(Uint8Array.of(1, 0), 3), "048"); // 256 = 4·62 + 8
  const buffer = new Uint8Array(40).map((_, i) => i * 7);
  const view = buffer.subarray(3, 35); // an offset view: only its own 32 bytes count
  const value = BigInt(`0x${Buffer.from(view).toString("hex")}`);
  assert.equal(bytesToBase62(view, 43), reference(value, 43));
  for (let i = 0; i < 200; i++) {
    const bytes = new Uint8Array(32).map(() => Math.floor(Math.random() * 256));
    assert.equal(bytesToBase62(bytes, 43), reference(BigInt(`0x${Buffer.from(bytes).toString("hex")}`), 43));
  }
});
