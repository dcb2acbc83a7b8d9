import { readFileSync } from "node:fs";
import { type CliIO, type Command, commandSuggestion, processIO, runCommand } from "./command.ts";
import { initCommand } from "./commands/init.ts";
import { runKeys } from "./commands/keys.ts";
import { serveCommand } from "./commands/serve.ts";

const COMMANDS: Command[] = [serveCommand, initCommand];

const HELP = `Gatehouse: authentication for APIs.

Usage: gatehouse <command> [options]

Commands:
  serve      Run the server
  init       Create the store and print an admin key (once)
  keys       Create, list, rotate, revoke and scan for API keys

Run gatehouse <command> --help for a command's options, gatehouse --version for the
version. Configuration comes from GATEHOUSE_* environment variables; see README.md.`;

export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    io.out(HELP);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-v") {
    io.out(packageVersion());
    return 0;
  }
  // A reader that stops early (`gatehouse keys list | head`) closes the pipe: the rest of
  // the output has nowhere to go, which is no error of ours, so exit quietly as Unix tools
  // do. Not for `serve`: a server whose log pipe breaks must not stop as if it had ended well.
  if (io === processIO && name !== "serve") {
    process.stdout.on("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EPIPE") process.exit(0);
      throw error;
    });
  }
  if (name === "keys") return runKeys(rest, io);
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const meant = commandSuggestion(name, ["keys", ...COMMANDS.map((c) => c.name)]);
    io.err(`gatehouse: unknown command "${name}"${meant}\n\n${HELP}`);
    return 2;
  }
  return runCommand(command, rest, io);
}

/** The version in Gatehouse's own package.json, read when asked (nothing else needs it). */
function packageVersion(): string {
  const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version?: unknown;
  };
  return typeof version === "string" ? version : "unknown";
}
