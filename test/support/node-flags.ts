import { readFileSync } from "node:fs";

/**
 * The node flags in a script's `#!/usr/bin/env -S node …` line. `bin/gatehouse.js` carries
 * the flags Gatehouse runs with (the young-generation cap: docs/deployment.md), so tests
 * and the benchmark start it as `npx gatehouse` does, and `test/cli/node-flags.test.ts`
 * keeps `npm start` and the Dockerfile in step with it.
 */
export function shebangNodeFlags(script: string): string[] {
  const first = readFileSync(script, "utf8").split("\n", 1)[0] ?? "";
  const match = /^#!\S*env\s+(?:-S\s+)?node((?:\s+--?\S+)*)\s*$/.exec(first);
  return match?.[1]?.split(/\s+/).filter(Boolean) ?? [];
}
