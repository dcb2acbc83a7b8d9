#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=1024 --no-allocation-site-pretenuring
// The one JavaScript file: it turns on Node's compile cache before any TypeScript loads.
// Node strips types with a WebAssembly compiler that, once loaded, holds ~18 MB for the
// life of the process; with the cache warm (every start after the first), no TypeScript
// is compiled and that compiler is never loaded, and startup is faster. The cache lives
// beside the code, owned by whoever installed it (not in a shared /tmp directory).
import { join } from "node:path";

// Checked before anything else loads: on an older Node the first error would otherwise be
// an obscure one about a missing export or a .ts file.
const major = Number(process.versions.node.split(".")[0]);
if (major < 24) {
  console.error(
    `Gatehouse needs Node.js 24 or later; this is Node.js ${process.version}. Install Node 24 (see .nvmrc), then run the command again.`,
  );
  process.exit(1);
}
const { enableCompileCache } = await import("node:module");
enableCompileCache(join(import.meta.dirname, "..", "node_modules", ".cache", "gatehouse-compile"));
const { main } = await import("../src/cli/main.ts");

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    // Known failures print a message; anything else is a bug worth a stack trace.
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exitCode = 1;
  },
);
