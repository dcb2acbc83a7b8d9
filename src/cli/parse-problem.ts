import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { nearestSetting } from "../config/nearest-setting.ts";

/**
 * What was wrong with a command line that parseArgs refused, in our words, or null when
 * the error is not one of parseArgs' (ERR_PARSE_ARGS_*).
 *
 * Why not Node's own message: for a mistyped flag it advises placing it after `--`
 * "as in '-- "--ofline"", with a quote never closed, which reads as if the CLI were
 * broken. Its errors carry only a code, not the option at fault, so that option is found
 * again from parseArgs' tokens (read leniently) rather than from the wording of a message
 * that may change between Node versions.
 */
export function parseProblem(
  error: unknown,
  args: string[],
  options: ParseArgsOptionsConfig,
  /** Per option, what is wrong with a value, or null when it could be valid (OptionSpec.check). */
  checks: Record<string, (value: string) => string | null> = {},
): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !code.startsWith("ERR_PARSE_ARGS_")) return null;
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  for (const token of tokens) {
    if (token.kind !== "option") continue;
    // hasOwn: `--constructor` must not find Object.prototype.constructor.
    const option = Object.hasOwn(options, token.name) ? options[token.name] : undefined;
    if (option === undefined) {
      // A long option one or two letters off names the one meant, as a misspelt setting does.
      const meant = token.rawName.startsWith("--") ? nearestSetting(token.name, Object.keys(options)) : null;
      return `unknown option ${token.rawName}${meant === null ? "" : `; did you mean --${meant}?`}`;
    }
    if (option.type === "boolean" && token.inlineValue) return `${token.rawName} takes no value`;
    if (option.type !== "string") continue;
    if (token.value === undefined) return `${token.rawName} needs a value`;
    // The same test as parseArgs' strict mode: a separate value that looks like an option
    // is more often a forgotten value than a value.
    if (!token.inlineValue && token.value.length > 1 && token.value.startsWith("-")) {
      // `--grace -5`: advising `--grace=-5` would only earn the next refusal. Say what the
      // option takes instead, when the value could not be one.
      const check = Object.hasOwn(checks, token.name) ? checks[token.name] : undefined;
      const wrong = check?.(token.value) ?? null;
      if (wrong !== null) return `${token.rawName} ${wrong} (got ${token.value})`;
      return `${token.rawName} needs a value (got ${token.value}, which looks like an option; write ${token.rawName}=${token.value} if that is the value)`;
    }
  }
  // A refusal the tokens do not explain (none today): Node's first line is better than nothing.
  return (error instanceof Error ? error.message : String(error)).split("\n")[0] ?? String(code);
}
