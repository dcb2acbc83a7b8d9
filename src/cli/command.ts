import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { nearestSetting } from "../config/nearest-setting.ts";
import { GatehouseError } from "../errors/gatehouse-error.ts";
import { MasterKeyError } from "../signing/master-key.ts";
import { StorageOpenError } from "../storage/open-storage.ts";
import { parseProblem } from "./parse-problem.ts";

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  env: Record<string, string | undefined>;
}

export const processIO: CliIO = {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
};

export interface OptionSpec {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  description: string;
  /**
   * For a string option whose values have a shape: what is wrong with `value` ("takes a
   * whole number"), or null when it could be valid. Lets a refused command line name the
   * real problem instead of suggesting a value the option would refuse next.
   */
  check?: (value: string) => string | null;
}

/** `check` of options that take a count (seconds and the like). */
export function wholeNumber(value: string): string | null {
  return /^\d+$/.test(value) ? null : "takes a whole number of 0 or more";
}

export interface Command {
  name: string;
  summary: string;
  usage: string;
  options: Record<string, OptionSpec>;
  /** Printed at the end of --help: what the output and exit codes mean. */
  epilog?: string;
  /** Returns the exit code. */
  run(args: { values: Record<string, unknown>; positionals: string[] }, io: CliIO): Promise<number>;
}

/** "; did you mean list?" for a mistyped command name, or nothing when none is close. */
export function commandSuggestion(name: string, commands: readonly string[]): string {
  const meant = nearestSetting(name, commands);
  return meant ? `; did you mean ${meant}?` : "";
}

/** A usage mistake: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

export function helpText(command: Command): string {
  const lines = [`${command.summary}`, "", `Usage: gatehouse ${command.usage}`];
  const entries = Object.entries(command.options);
  if (entries.length > 0) {
    lines.push("", "Options:");
    for (const [name, option] of entries) {
      const flag = option.short ? `-${option.short}, --${name}` : `    --${name}`;
      const value = option.type === "string" ? " <value>" : "";
      lines.push(`  ${(flag + value).padEnd(30)} ${option.description}`);
    }
  }
  lines.push(`  ${"-h, --help".padEnd(30)} show this help`);
  if (command.epilog) lines.push("", command.epilog);
  return lines.join("\n");
}

export async function runCommand(command: Command, argv: string[], io: CliIO): Promise<number> {
  const options: ParseArgsOptionsConfig = {
    ...Object.fromEntries(
      Object.entries(command.options).map(([name, { type, short, multiple }]) => [
        name,
        { type, ...(short ? { short } : {}), ...(multiple ? { multiple } : {}) },
      ]),
    ),
    help: { type: "boolean", short: "h" },
  };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (error) {
    const checks = Object.fromEntries(
      Object.entries(command.options).flatMap(([name, { check }]) => (check ? [[name, check]] : [])),
    );
    const problem = parseProblem(error, argv, options, checks);
    if (problem === null) throw error;
    // One line that stays on screen, not the whole help after it: the help is one flag away.
    io.err(`gatehouse ${command.name}: ${problem} (see gatehouse ${command.name} --help)`);
    return 2;
  }
  if (parsed.values.help) {
    io.out(helpText(command));
    return 0;
  }
  try {
    return await command.run({ values: parsed.values, positionals: parsed.positionals }, io);
  } catch (error) {
    if (error instanceof UsageError) {
      // One line that stays on screen, as for a parse problem: the help is one flag away.
      io.err(`gatehouse ${command.name}: ${error.message} (see gatehouse ${command.name} --help)`);
      return 2;
    }
    // A refusal with a stable code (no such key, a conflict, a rule broken) is an answer
    // for the operator, not a bug: one line, no stack trace.
    if (error instanceof GatehouseError) {
      io.err(`gatehouse ${command.name}: ${error.detail} (${error.code})`);
      return 1;
    }
    // The master key missing, wrong or readable by others, or a store that cannot be
    // opened: the operator's to fix, said in one line as `serve` says it, not as a stack trace.
    if (error instanceof MasterKeyError || error instanceof StorageOpenError) {
      io.err(`gatehouse ${command.name}: ${error.message}`);
      return 1;
    }
    // Files that are not there or not readable: the system's own message says it well.
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code) && error instanceof Error) {
      io.err(`gatehouse ${command.name}: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
