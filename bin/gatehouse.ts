#!/usr/bin/env -S node --max-semi-space-size=4
import { main } from "../src/cli/main.ts";

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Known failures print a message; anything else is a bug worth a stack trace.
    console.error(error instanceof Error ? (error.stack ?? error.message) : error);
    process.exitCode = 1;
  },
);
