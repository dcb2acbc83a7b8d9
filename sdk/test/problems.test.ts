import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { PROBLEMS } from "../src/index.ts";

test("the README's header mapping lists every problem code with its status", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const rows = new Map<string, number>();
  for (const match of readme.matchAll(/^\|\s*(\d{3})\s*\|\s*`([A-Z_]+)`/gm)) {
    rows.set(match[2] ?? "", Number(match[1]));
  }
  const expected = new Map(Object.entries(PROBLEMS).map(([code, { status }]) => [code, status]));
  assert.deepEqual(rows, expected);
});
