import { CLI_ACTOR } from "../../audit/context.ts";
import { ValidationError } from "../../errors/gatehouse-error.ts";
import { digestKey, redactKey, redactKeysIn } from "../../keys/key-format.ts";
import { keyStatus } from "../../keys/key-status.ts";
import { PERMISSIONS } from "../../keys/permissions.ts";
import { scanForKeys } from "../../leaks/key-scanner.ts";
import { type CliIO, type Command, commandSuggestion, runCommand, UsageError, wholeNumber } from "../command.ts";
import { describeStore, withGatehouse } from "../context.ts";
import { terminalText } from "../terminal-text.ts";
import { resetSigningCommand } from "./keys-reset-signing.ts";
import { rotateSigningCommand } from "./keys-rotate-signing.ts";

const OPERATOR = { context: CLI_ACTOR, permissions: null };

function integerOption(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  const wrong = typeof value === "string" ? wholeNumber(value) : "takes a whole number of 0 or more";
  if (wrong !== null) throw new UsageError(`--${name} ${wrong}`);
  return Number(value);
}

/** `check` of --rate-limit: its shape (the limits within it are checked when it is used). */
function rateLimitValue(value: string): string | null {
  return /^\d{1,10}\/\d{1,5}$/.test(value) ? null : "takes <limit>/<window seconds>, e.g. 100/60";
}

/** The option of `keys create` that sets each field the key service checks. */
const CREATE_FLAGS: Record<string, string> = {
  name: "--name",
  scopes: "--scope",
  permissions: "--permission",
  ownerId: "--owner",
  expiresInSeconds: "--expires-in",
  rateLimit: "--rate-limit",
  allowedAddresses: "--allow-address",
};

function createUsageError(
  error: ValidationError,
  scopes: readonly string[],
  addresses: readonly string[] = [],
): UsageError {
  if (error.errors.length === 0) return new UsageError(error.detail);
  const lines = error.errors.map(({ path, message }) => {
    const [, field = "", index] = path.split("/");
    const flag = CREATE_FLAGS[field] ?? field;
    // Name the scope or address by its value: their flags may be given many times.
    const scope =
      (field === "scopes" || field === "allowedAddresses") && index !== undefined
        ? (field === "scopes" ? scopes : addresses)[Number(index)]
        : undefined;
    return scope === undefined ? `${flag} ${message}` : `${flag} ${JSON.stringify(scope)} ${message}`;
  });
  return new UsageError(lines.join("; "));
}

const create: Command = {
  name: "keys create",
  summary: "Create an API key and print it (once).",
  usage:
    "keys create --name <name> [--scope <scope>]… [--permission <p>]… [--expires-in <seconds>] [--rate-limit <n>/<s>] [--owner <id>] [--allow-address <ip or cidr>]… [--json]",
  options: {
    name: { type: "string", description: "a label for the key" },
    scope: { type: "string", multiple: true, description: "a scope to grant (repeatable)" },
    permission: {
      type: "string",
      multiple: true,
      description: `a Gatehouse admin permission (repeatable): ${PERMISSIONS.join(", ")}`,
    },
    "expires-in": {
      type: "string",
      description: "lifetime in seconds, at least 60 (default: the maximum)",
      check: wholeNumber,
    },
    owner: { type: "string", description: "owner id to record" },
    "rate-limit": {
      type: "string",
      description: "<limit>/<window seconds>, e.g. 100/60 (default: the server's)",
      check: rateLimitValue,
    },
    "allow-address": {
      type: "string",
      multiple: true,
      description: "an address or CIDR range the key may be used from (repeatable; default: anywhere)",
    },
    json: { type: "boolean", description: "print JSON" },
  },
  async run({ values }, io) {
    if (typeof values.name !== "string") throw new UsageError("--name is required");
    let rateLimit: { limit: number; windowSeconds: number } | undefined;
    if (values["rate-limit"] !== undefined) {
      const match = /^(\d{1,10})\/(\d{1,5})$/.exec(String(values["rate-limit"]));
      const limit = Number(match?.[1]);
      const windowSeconds = Number(match?.[2]);
      if (!match || limit < 1 || windowSeconds < 1 || windowSeconds > 86_400) {
        throw new UsageError("--rate-limit takes <limit>/<window seconds>, e.g. 100/60");
      }
      rateLimit = { limit, windowSeconds };
    }
    // Permission names hold no commas: "--permission keys:read,keys:write" means both.
    const permissions = ((values.permission as string[] | undefined) ?? []).flatMap((p) =>
      p.split(",").filter(Boolean),
    );
    const scopes = (values.scope as string[] | undefined) ?? [];
    const addresses = (values["allow-address"] as string[] | undefined) ?? [];
    const expires = integerOption(values["expires-in"], "expires-in");
    return withGatehouse(io, async (gatehouse) => {
      const { record, key } = await gatehouse.keys
        .create(
          {
            name: values.name as string,
            scopes,
            permissions,
            ...(expires !== undefined ? { expiresInSeconds: expires } : {}),
            ...(typeof values.owner === "string" ? { ownerId: values.owner } : {}),
            ...(rateLimit ? { rateLimit } : {}),
            ...(addresses.length > 0 ? { allowedAddresses: addresses } : {}),
          },
          OPERATOR,
        )
        .catch((error: unknown) => {
          // The key service holds the rules (the API's too); here they are told in flags.
          if (error instanceof ValidationError) throw createUsageError(error, scopes, addresses);
          throw error;
        });
      const expiresAt = record.expiresAt === null ? null : new Date(record.expiresAt).toISOString();
      if (values.json) {
        io.out(
          JSON.stringify({
            id: record.id,
            key,
            hint: record.hint,
            scopes: record.scopes,
            allowedAddresses: record.allowedAddresses,
            expiresAt,
          }),
        );
      } else {
        // The key alone on stdout (KEY=$(gatehouse keys create …) captures just it); the
        // note is for the person at the terminal.
        io.out(key);
        io.err(`(id ${record.id}; shown once)`);
      }
      return 0;
    });
  },
};

/** Keys read per page by `keys list`. */
const LIST_PAGE = 500;

const list: Command = {
  name: "keys list",
  summary: "List every key, newest first.",
  usage: "keys list [--owner <id>] [--json]",
  options: {
    owner: { type: "string", description: "only this owner's keys" },
    json: { type: "boolean", description: "print JSON lines" },
  },
  async run({ values }, io) {
    return withGatehouse(io, async (gatehouse) => {
      const now = gatehouse.clock();
      // Page after page, each printed as it is read: every key (it stopped at 1,000 without
      // saying so, and a review could miss the oldest, privileged ones), never all in memory.
      let before: string | undefined;
      for (;;) {
        const records = await gatehouse.keys.list({
          limit: LIST_PAGE,
          ...(before !== undefined ? { before } : {}),
          ...(typeof values.owner === "string" ? { ownerId: values.owner } : {}),
        });
        for (const record of records) {
          const status = keyStatus(record, now);
          if (values.json) {
            io.out(
              JSON.stringify({
                id: record.id,
                name: record.name,
                hint: record.hint,
                status,
                scopes: record.scopes,
                permissions: record.permissions,
                allowedAddresses: record.allowedAddresses,
                expiresAt: record.expiresAt === null ? null : new Date(record.expiresAt).toISOString(),
              }),
            );
          } else {
            // Permissions only where a key has any: an admin key must not look like one with no rights.
            const permissions = record.permissions.length > 0 ? `  permissions: ${record.permissions.join(" ")}` : "";
            const from = record.allowedAddresses ? `  from: ${record.allowedAddresses.join(" ")}` : "";
            // The expiry date up front: keys (the admin key too) expire, and this is where one looks.
            const expires =
              record.expiresAt === null ? "no expiry " : new Date(record.expiresAt).toISOString().slice(0, 10);
            io.out(
              `${record.id}  ${record.hint}  ${status.padEnd(7)}  ${expires}  ${terminalText(record.name)}  [${terminalText(record.scopes.join(" "))}]${permissions}${from}`,
            );
          }
        }
        if (records.length < LIST_PAGE) return 0;
        before = records.at(-1)?.id;
      }
    });
  },
};

const revoke: Command = {
  name: "keys revoke",
  summary: "Revoke a key at once.",
  usage: "keys revoke <id> [--reason <text>]",
  options: { reason: { type: "string", description: "why, for the audit log" } },
  async run({ values, positionals }, io) {
    const [id] = positionals;
    if (!id || positionals.length > 1) throw new UsageError("give exactly one key id");
    return withGatehouse(io, async (gatehouse) => {
      const record = await gatehouse.keys.revoke(
        id,
        (values.reason as string | undefined) ?? "revoked from the CLI",
        OPERATOR,
      );
      const at = new Date(record.revokedAt ?? 0).toISOString();
      io.out(`revoked ${record.id} (${record.hint}) at ${at}: ${terminalText(record.revokedReason ?? "")}`);
      // A server on the same SQLite file learns of changes by polling its key log
      // (docs/key-index.md); with PostgreSQL and Redis every node hears of it at once.
      if (!gatehouse.config.databaseUrl)
        io.err("(a server running on this SQLite file stops accepting it within 0.1 s)");
      return 0;
    });
  },
};

const rotate: Command = {
  name: "keys rotate",
  summary: "Issue a replacement key; the old one works for the grace period.",
  usage: "keys rotate <id> --grace <seconds> [--json]",
  options: {
    grace: { type: "string", description: "seconds the old key keeps working (0: stops now)", check: wholeNumber },
    json: { type: "boolean", description: "print JSON" },
  },
  async run({ values, positionals }, io) {
    const [id] = positionals;
    if (!id || positionals.length > 1) throw new UsageError("give exactly one key id");
    const grace = integerOption(values.grace, "grace");
    if (grace === undefined) throw new UsageError("--grace is required");
    return withGatehouse(io, async (gatehouse) => {
      const rotated = await gatehouse.keys.rotate(id, { gracePeriodSeconds: grace }, OPERATOR);
      if (values.json)
        io.out(JSON.stringify({ id: rotated.record.id, key: rotated.key, previous: rotated.previous.id }));
      else {
        io.out(rotated.key);
        io.err(`(id ${rotated.record.id}; replaces ${id}; shown once)`);
      }
      return 0;
    });
  },
};

const scan: Command = {
  name: "keys scan",
  summary: "Find Gatehouse keys in files and report which are live. Exits 1 when a leak is found.",
  usage: "keys scan <path>… [--json] [--offline]",
  options: {
    json: { type: "boolean", description: "print one JSON object per finding, then a summary object" },
    offline: {
      type: "boolean",
      description: "do not open the store; every well-formed key counts as a leak",
    },
  },
  epilog: [
    "Every path not read is named on stderr with the reason: skipped on purpose",
    "(version-control stores, dependencies, symbolic links inside the tree, FIFOs and",
    "devices), or could not be read (missing, permission denied, an I/O error). Files",
    "that start with a UTF-16 byte order mark are decoded as UTF-16. A key in a path is",
    "printed as its hint, like the keys found.",
    "",
    "Exit codes:",
    "  0  no leak: no key found, or (checked against the store) none of them live, and",
    "     every path was read or skipped on purpose",
    "  1  a leak: a live key, or with --offline any well-formed key (its state is unknown),",
    "     whatever else happened; also when the configuration or the store cannot be opened",
    "  2  no leak found, but the scan is incomplete: a path is missing or could not be read",
    "     (the rest were scanned); or a usage error",
  ].join("\n"),
  async run({ values, positionals }, io) {
    if (positionals.length === 0) throw new UsageError("give at least one file or directory");
    const report = async (lookup: ((key: string) => Promise<string>) | null, prefix: string) => {
      // A path can hold a key too (`copy-of-gate_….env`): printed as the key's hint. Printed
      // as text, its control characters are escaped (a file name may hold any but / and NUL).
      const shown = (path: string) => redactKeysIn(path, prefix);
      const shownText = (path: string) => terminalText(shown(path));
      let live = 0;
      let found = 0;
      let skipped = 0;
      let unread = 0;
      for await (const event of scanForKeys(positionals, { prefix })) {
        if (event.kind === "skipped") {
          skipped++;
          io.err(`skipped ${shownText(event.path)}: ${event.reason}`);
          continue;
        }
        if (event.kind === "unreadable") {
          unread++;
          io.err(`could not read ${shownText(event.path)}: ${event.reason}`);
          continue;
        }
        found++;
        const status = lookup ? await lookup(event.key) : "unchecked";
        if (status === "live") live++;
        const where = `${shownText(event.path)}:${event.line}:${event.column}`;
        if (values.json)
          io.out(
            JSON.stringify({
              path: shown(event.path),
              line: event.line,
              column: event.column,
              key: redactKey(event.key),
              status,
            }),
          );
        else io.out(`${where}  ${redactKey(event.key)}  ${status}`);
      }
      const unreadNote = unread > 0 ? `, ${unread} path(s) could not be read` : "";
      if (values.json) io.out(JSON.stringify({ summary: { found, live, skipped, unreadable: unread } }));
      else if (lookup) io.err(`${found} key(s) found, ${live} live, ${skipped} path(s) skipped${unreadNote}`);
      else {
        const unchecked = found > 0 ? ", not checked (--offline: each counts as a leak)" : "";
        io.err(`${found} key(s) found${unchecked}, ${skipped} path(s) skipped${unreadNote}`);
      }
      // Offline, a well-formed key's state is unknown: it may be live, so it is a leak
      // until checked. A CI job that runs --offline must fail on a committed key.
      if ((lookup ? live : found) > 0) return 1;
      // Not a clean result either: what could not be read may hold a key.
      if (unread > 0) {
        io.err("The scan is incomplete: no leak in what was read, but not everything could be read (exit 2).");
        return 2;
      }
      return 0;
    };
    if (values.offline) {
      const { configOrReport } = await import("../context.ts");
      const config = configOrReport(io, { usingStore: false });
      return config ? report(null, config.keys.prefix) : 1;
    }
    return withGatehouse(
      io,
      (gatehouse) =>
        report(async (key) => {
          const record = await gatehouse.storage.keys.findByDigest(digestKey(key));
          if (!record) return "unknown";
          const status = keyStatus(record, gatehouse.clock());
          return status === "active" ? "live" : status;
        }, gatehouse.config.keys.prefix).then((code) => {
          if (!values.json) io.err(`(checked against ${describeStore(gatehouse.config)})`);
          return code;
        }),
      { withoutStore: "To scan without a store, add --offline (every key found then counts as a leak)." },
    );
  },
};

export const keysSubcommands: Command[] = [
  create,
  list,
  revoke,
  rotate,
  scan,
  rotateSigningCommand,
  resetSigningCommand,
];

export async function runKeys(argv: string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  const command = keysSubcommands.find((c) => c.name === `keys ${name}`);
  if (!command) {
    const lines = ["Manage API keys.", "", "Usage: gatehouse keys <command> [options]", "", "Commands:"];
    const width = Math.max(...keysSubcommands.map((c) => c.name.length - 5)) + 2;
    for (const c of keysSubcommands) lines.push(`  ${c.name.slice(5).padEnd(width)} ${c.summary}`);
    lines.push("", "Run gatehouse keys <command> --help for its options.");
    const help = name === undefined || name === "--help" || name === "-h" || name === "help";
    (help ? io.out : io.err)(
      help
        ? lines.join("\n")
        : `gatehouse keys: unknown command "${name}"${commandSuggestion(
            name,
            keysSubcommands.map((c) => c.name.slice(5)),
          )}\n\n${lines.join("\n")}`,
    );
    return help ? 0 : 2;
  }
  return runCommand(command, rest, io);
}
