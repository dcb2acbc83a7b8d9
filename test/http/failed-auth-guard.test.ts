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
  const counted = (guard as unknown as { counted: Map<string, number> }).counted;
  const keys = Array.from({ length: 25 }, () => generateKey("gate"));
  const total = FailedAuthGuard.MAX_COUNTED + 20_000;
  const addresses = Math.ceil(total / keys.length);
  for (let i = 0; i < total; i++) {
    const a = i % addresses;
    await guard.failedKey(`10.${a >> 16}.${(a >> 8) & 255}.${a & 255}`, keys[Math.floor(i / addresses)] as string, "gate");
  }
  assert.equal(counted.size, FailedAuthGuard.MAX_COUNTED);
  // The same key again from the address that failed with it last is still remembered.
  const last = total - 1;
  const a = last % addresses;
  const before = counted.size;
  await guard.failedKey(`10.${a >> 16}.${(a >> 8) & 255}.${a & 255}`, keys[Math.floor(last / addresses)] as string, "gate");
  assert.equal(counted.size, before);
});
