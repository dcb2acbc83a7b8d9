import assert from "node:assert/strict";
import { test } from "node:test";
import { keepTickObjectShape } from "../../src/lib/tick-shape.ts";

test("two of Node's tick objects are held, once: if Node stops reporting them, this fails", async () => {
  assert.equal(keepTickObjectShape(), 2);
  // Ticks still run, and the hook is off: no more are taken.
  await new Promise<void>((resolve) => process.nextTick(resolve));
  assert.equal(keepTickObjectShape(), 2);
});
