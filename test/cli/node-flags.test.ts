import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { shebangNodeFlags } from "../support/node-flags.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const flags = shebangNodeFlags(join(ROOT, "bin", "gatehouse.js"));

// The young generation is capped wherever Gatehouse is started (docs/deployment.md): V8
// takes the flag only at start, so the shebang, `npm start` and the image must all say it.
test("the shebang of bin/gatehouse.js caps V8's young generation", () => {
  assert.ok(
    flags.some((flag) => /^--max-semi-space-size=\d+$/.test(flag)),
    `flags: ${flags.join(" ")}`,
  );
});

// The key index's load at start made V8 pretenure short-lived objects; the old generation
// then kept 30-85 MB of pages for good (docs/deployment.md).
test("the shebang of bin/gatehouse.js turns off V8's allocation-site pretenuring", () => {
  assert.ok(flags.includes("--no-allocation-site-pretenuring"), `flags: ${flags.join(" ")}`);
});

// A heap limit below V8's default makes it collect the old generation sooner: with the
// default it let garbage promoted under load pile up to ~20 MB before its first full
// collection (docs/deployment.md). It must still leave room for what grows with the keys:
// the key index interns scope sets and owners on the heap, 520 MB for a million keys that
// each have scopes of their own (docs/key-index.md).
test("the shebang of bin/gatehouse.js caps V8's old generation, not below 1 GB", () => {
  const cap = flags.map((flag) => /^--max-old-space-size=(\d+)$/.exec(flag)?.[1]).find(Boolean);
  assert.ok(cap !== undefined, `flags: ${flags.join(" ")}`);
  assert.ok(Number(cap) >= 1024, `--max-old-space-size=${cap}`);
});

test("npm start runs the server with the shebang's node flags", () => {
  const scripts: unknown = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts;
  assert.equal((scripts as Record<string, string>).start, ["node", ...flags, "bin/gatehouse.js", "serve"].join(" "));
});

test("the container runs the server with the shebang's node flags", () => {
  const entrypoint = /^ENTRYPOINT (\[.*\])$/m.exec(readFileSync(join(ROOT, "Dockerfile"), "utf8"))?.[1];
  assert.ok(entrypoint, "Dockerfile has an exec-form ENTRYPOINT");
  assert.deepEqual(JSON.parse(entrypoint), ["node", ...flags, "bin/gatehouse.js"]);
});

// The machine's own Node (20 here) is what a new user may run `npm start` with first.
const olderNode = ["/usr/bin/node", "/usr/local/bin/node"].find((path) => {
  const version = spawnSync(path, ["--version"], { encoding: "utf8" }).stdout?.trim() ?? "";
  return /^v\d+/.test(version) && Number(version.slice(1).split(".")[0]) < 24;
});

test("on a Node older than 24, the CLI says which Node it needs", { skip: olderNode === undefined }, () => {
  const run = spawnSync(olderNode as string, [join(ROOT, "bin", "gatehouse.js"), "--help"], { encoding: "utf8" });
  assert.equal(run.status, 1);
  assert.match(run.stderr, /Gatehouse needs Node\.js 24 or later; this is Node\.js v\d+/);
});
