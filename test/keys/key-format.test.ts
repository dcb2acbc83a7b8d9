import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import { crc32 } from "node:zlib";
import {
  CHECKSUM_CHARS,
  checksumOf,
  digestKey,
  digestKeyInto,
  generateKey,
  isWellFormedKey,
  keyHint,
  keyPattern,
  RANDOM_CHARS,
} from "../../src/keys/key-format.ts";

// An implementation of the format written from docs/key-format.md, independent of
// src/keys: it is what a third-party scanner would write.
const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
function base62(value: bigint, width: number): string {
  let out = "";
  for (let rest = value; rest > 0n; rest /= 62n) out = ALPHABET.charAt(Number(rest % 62n)) + out;
  return out.padStart(width, "0");
}
function bigintOf(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString("hex") || "0"}`);
}
function referenceKey(prefix: string, bytes: Uint8Array): string {
  const body = `${prefix}_${base62(bigintOf(bytes), 43)}`;
  return body + base62(BigInt(crc32(Buffer.from(body, "ascii"))), 6);
}
function withChecksum(body: string): string {
  return body + base62(BigInt(crc32(body)), 6);
}

const ZERO = new Uint8Array(32);
const ONES = new Uint8Array(32).fill(0xff);
const COUNTING = Uint8Array.from({ length: 32 }, (_, i) => i);

// Pinned once and checked by hand: Python's zlib.crc32 and integer base62 give the same.
// gate_ + "0"×43: CRC32 = 0x73092763 = 1929979747 = base62 "26bztb".
const ZERO_KEY = "gate_000000000000000000000000000000000000000000026bztb";
// 2^256 − 1 = base62 "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1"; CRC32 = 0xd8862f93.
const ONES_KEY = "gate_yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp13xqK6V";
// bytes 0x00 0x01 … 0x1f; CRC32 = 0x5e033fe3.
const COUNTING_KEY = "gate_003aUlTJC7tjlCTQj2uNU3MFagCXG9LRKRcwGkBIDlf1ik4J9";

describe("key format", () => {
  test("shape: prefix, underscore, 43 base62 random characters, 6 base62 checksum characters", () => {
    const key = generateKey("gate");
    assert.match(key, /^gate_[0-9A-Za-z]{49}$/);
    assert.equal(key.length, 54);
    assert.equal(RANDOM_CHARS, 43);
    assert.equal(CHECKSUM_CHARS, 6);
    assert.equal(key.slice(-6), checksumOf(key.slice(0, -6)));
    assert.ok(isWellFormedKey(key, "gate"));
    assert.notEqual(generateKey("gate"), key, "two keys from the system source differ");
  });

  test("deterministic for injected random bytes: pinned keys", () => {
    const sizes: number[] = [];
    const from = (bytes: Uint8Array) => (size: number) => {
      sizes.push(size);
      return bytes;
    };
    assert.equal(generateKey("gate", from(ZERO)), ZERO_KEY);
    assert.equal(generateKey("gate", from(ONES)), ONES_KEY);
    assert.equal(generateKey("gate", from(COUNTING)), COUNTING_KEY);
    assert.deepEqual(sizes, [32, 32, 32], "asks for exactly 256 bits");
    assert.equal(generateKey("acme", from(ZERO)), "acme_00000000000000000000000000000000000000000002X8XW8");
  });

  test("pinned keys agree with an independent implementation (zlib.crc32, bigint base62)", () => {
    assert.equal(referenceKey("gate", ZERO), ZERO_KEY);
    assert.equal(referenceKey("gate", ONES), ONES_KEY);
    assert.equal(referenceKey("gate", COUNTING), COUNTING_KEY);
    assert.equal(crc32(ZERO_KEY.slice(0, -6)), 0x73092763);
    assert.equal(crc32(ONES_KEY.slice(0, -6)), 0xd8862f93);
    assert.equal(base62((1n << 256n) - 1n, 43), "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1");
    for (let i = 0; i < 50; i++) {
      const bytes = new Uint8Array(32).map(() => Math.floor(Math.random() * 256));
      assert.equal(
        generateKey("gate", () => bytes),
        referenceKey("gate", bytes),
      );
    }
  });

  test("random bytes of the wrong length are a caller mistake", () => {
    assert.throws(() => generateKey("gate", () => new Uint8Array(31)), TypeError);
    assert.throws(() => generateKey("gate", () => new Uint8Array(33)), TypeError);
    assert.throws(() => generateKey("Gate", () => ZERO), TypeError);
  });

  test("the checksum rejects every single-character change", () => {
    for (const key of [ZERO_KEY, ONES_KEY, COUNTING_KEY]) {
      assert.ok(isWellFormedKey(key, "gate"));
      let tried = 0;
      for (let i = 0; i < key.length; i++) {
        for (const c of `${ALPHABET}_`) {
          if (c === key[i]) continue;
          const changed = key.slice(0, i) + c + key.slice(i + 1);
          tried++;
          assert.equal(isWellFormedKey(changed, "gate"), false, `${changed} (position ${i})`);
        }
      }
      assert.equal(tried, 54 * 62);
    }
  });

  test("rejects wrong lengths, prefixes, characters and non-strings", () => {
    for (const bad of [
      "",
      "gate_",
      ZERO_KEY.slice(0, -1),
      `${ZERO_KEY}0`,
      `0${ZERO_KEY}`,
      ZERO_KEY.replace("gate_", "gate-"),
      ZERO_KEY.toUpperCase(),
      ` ${ZERO_KEY.slice(1)}`,
      withChecksum(`gate_${"0".repeat(42)}é`),
      withChecksum(`gate_${"0".repeat(42)}-`),
    ]) {
      assert.equal(isWellFormedKey(bad, "gate"), false, bad);
    }
    assert.equal(isWellFormedKey(ZERO_KEY, "acme"), false);
    assert.equal(isWellFormedKey(ZERO_KEY, "gat"), false);
    for (const value of [null, undefined, 42, {}, [ZERO_KEY], Buffer.from(ZERO_KEY)]) {
      assert.equal(isWellFormedKey(value, "gate"), false);
    }
  });

  test("43-character bodies above 2^256 − 1 are rejected even with a valid checksum", () => {
    const max = base62((1n << 256n) - 1n, 43);
    assert.ok(isWellFormedKey(withChecksum(`gate_${max}`), "gate"));
    for (const body of [
      base62(1n << 256n, 43),
      base62((1n << 256n) + 12345n, 43),
      "z".repeat(43),
      `z${"0".repeat(42)}`,
      `yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp${"z"}`,
    ]) {
      const key = withChecksum(`gate_${body}`);
      assert.equal(key.length, 54);
      assert.equal(isWellFormedKey(key, "gate"), false, key);
    }
  });

  test("keyPattern finds keys in free text", () => {
    const text = [
      `GATEHOUSE_KEY=${ZERO_KEY}`,
      `{"key":"${ONES_KEY}"}`,
      `curl -H 'Authorization: Bearer ${COUNTING_KEY}' https://api.example`,
      `${ZERO_KEY}`,
      `see https://x.example/?k=${ONES_KEY}&y=1, or (${COUNTING_KEY}).`,
    ].join("\n");
    const found = [...text.matchAll(keyPattern("gate"))].map((m) => m[0]);
    assert.deepEqual(found, [ZERO_KEY, ONES_KEY, COUNTING_KEY, ZERO_KEY, ONES_KEY, COUNTING_KEY]);
    // The pattern only finds candidates; the checksum decides.
    const lookalike = `gate_${"A".repeat(49)}`;
    assert.deepEqual(
      [...`x ${lookalike} y`.matchAll(keyPattern("gate"))].map((m) => m[0]),
      [lookalike],
    );
    assert.equal(isWellFormedKey(lookalike, "gate"), false);
  });

  test("keyPattern does not match inside longer tokens", () => {
    for (const text of [
      `x${ZERO_KEY}`,
      `9${ZERO_KEY}`,
      `my_${ZERO_KEY}`,
      `${ZERO_KEY}x`,
      `${ZERO_KEY}0`,
      `${ZERO_KEY}_old`,
      `GATE_${ZERO_KEY.slice(5)}`,
      ZERO_KEY.slice(0, -1),
    ]) {
      assert.deepEqual(text.match(keyPattern("gate")), null, text);
    }
    assert.equal(keyPattern("acme").test(ZERO_KEY), false);
  });

  test("digest is SHA-256 of the whole key; hint shows prefix, 4 + 4 characters", () => {
    assert.equal(digestKey(ZERO_KEY).toString("hex"), createHash("sha256").update(ZERO_KEY, "ascii").digest("hex"));
    assert.equal(
      digestKey(ZERO_KEY).toString("hex"),
      "76e464657ac81b092590c4b0338838e1651351f30f91bd348692b093db72328f", // Python's hashlib
    );
    assert.equal(keyHint(ONES_KEY), "gate_yhjs…qK6V");
    assert.ok(!keyHint(ONES_KEY).includes(ONES_KEY.slice(9, 49)));
  });

  test("digestKeyInto writes the same digest into the caller's buffer and returns it in base64", () => {
    const out = Buffer.alloc(32, 0xff);
    assert.equal(digestKeyInto(ZERO_KEY, out), digestKey(ZERO_KEY).toString("base64"));
    assert.deepEqual(out, digestKey(ZERO_KEY));
    digestKeyInto(ONES_KEY, out);
    assert.deepEqual(out, digestKey(ONES_KEY));
  });
});
