/**
 * FailedAuthGuard's memory of failed keys stays bounded and cheap under a flood of
 * different keys from many addresses (each under the 30 that block it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { FailedAuthGuard } from "../../src/http/authenticate.ts";
import { generateKey } from "../../src/keys/key-format.ts";

test("the failed-key memory is capped, and a failure costs no scan of it", async () => {
  const guard = new FailedAuthGuard();
  const counted = (guard as unknown as { counted: Map<string, unknown> }).counted;
  const keys = Array.from({ length: 25 }, () => generateKey("gate"));
  const total = FailedAuthGuard.MAX_COUNTED + 20_000;
  const addresses = Math.ceil(total / keys.length);
  for (let i = 0; i < total; i++) {
    const a = i % addresses;
    await guard.failedKey(
      `10.${a >> 16}.${(a >> 8) & 255}.${a & 255}`,
      keys[Math.floor(i / addresses)] as string,
      "gate",
      {
        code: "NOT_FOUND",
        keyId: null,
      },
    );
  }
  assert.equal(counted.size, FailedAuthGuard.MAX_COUNTED);
  const ipOf = (n: number) => `10.${n >> 16}.${(n >> 8) & 255}.${n & 255}`;
  // The latest failures are remembered (a retry is answered without a lookup); the oldest,
  // past the cap, are forgotten (looked up and counted again if they come back).
  const last = total - 1;
  assert.equal(
    guard.failedLately(ipOf(last % addresses), keys[Math.floor(last / addresses)] as string, "gate")?.code,
    "NOT_FOUND",
  );
  assert.equal(guard.failedLately(ipOf(0), keys[0] as string, "gate"), null);
  // Another address never failed with that key.
  assert.equal(guard.failedLately("192.0.2.1", keys[Math.floor(last / addresses)] as string, "gate"), null);
});

// Regression: failures were counted per full address, so an IPv6 client, which usually
// holds a whole /64, could try 30 keys from each of 2^64 addresses and never be blocked
// (the audit log's flood brake already counted one /64 as one sender).
test("an IPv6 /64 is one sender: 30 keys failing across its addresses block all of it, and no other", async () => {
  const guard = new FailedAuthGuard();
  for (let i = 0; i < FailedAuthGuard.MAX_FAILURES; i++) {
    await guard.failedKey(`2001:db8:1:2::${(i + 1).toString(16)}`, generateKey("gate"), "gate", {
      code: "NOT_FOUND",
      keyId: null,
    });
  }
  assert.ok((await guard.blockedFor("2001:db8:1:2:ffff:ffff:ffff:ffff")) > 0);
  assert.ok((await guard.blockedFor("2001:db8:1:2::1")) > 0);
  assert.equal(await guard.blockedFor("2001:db8:1:3::1"), 0, "the next /64 is someone else");
  // An IPv4 address stands for itself, written plainly or mapped into IPv6.
  for (let i = 0; i < FailedAuthGuard.MAX_FAILURES; i++) {
    await guard.failedKey("192.0.2.7", generateKey("gate"), "gate", { code: "NOT_FOUND", keyId: null });
  }
  assert.ok((await guard.blockedFor("::ffff:192.0.2.7")) > 0);
  assert.equal(await guard.blockedFor("192.0.2.8"), 0);
});
