#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=256 --no-allocation-site-pretenuring
// The one JavaScript file: it turns on Node's compile cache before any TypeScript loads.
// Node strips types with a WebAssembly compiler that, once loaded, holds ~18 MB for the
// life of the process; with the cache warm (every start after the first), no TypeScript
// is compiled and that compiler is never loaded, and startup is faster. The cache lives
// beside the code, owned by whoever installed it (not in a shared /tmp directory).
import { enableCompileCache } from "node:module";
import { join } from "node:path";

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
