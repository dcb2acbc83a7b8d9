import { CLI_ACTOR } from "../../audit/context.ts";
import { PERMISSIONS } from "../../keys/permissions.ts";
import { type Command, UsageError } from "../command.ts";
import { describeStore, INITIALISED, withGatehouse } from "../context.ts";

export const initCommand: Command = {
  name: "init",
  summary: "Create the store and print an admin key (once).",
  usage: "init [--json | --key-only] [--new-admin-key]",
  options: {
    json: { type: "boolean", description: 'print {"adminKey": "…"} as JSON' },
    "key-only": {
      type: "boolean",
      description: "print the admin key alone, for scripts: ADMIN=$(gatehouse init --key-only)",
    },
    "new-admin-key": { type: "boolean", description: "on an existing store: issue another admin key" },
  },
  async run({ values }, io) {
    if (values.json && values["key-only"]) throw new UsageError("choose one of --json and --key-only");
    // Repeated in the refusal below, so its advice can be pasted as it is.
    const format = values.json ? " --json" : values["key-only"] ? " --key-only" : "";
    return withGatehouse(
      io,
      async (gatehouse) => {
        const existing = await gatehouse.storage.meta.get(INITIALISED);
        if (existing !== null && !values["new-admin-key"]) {
          io.err(
            `This store (${describeStore(gatehouse.config)}) was initialised at ${existing}. Its admin key was shown then and is not stored. To issue another admin key, run: npx gatehouse init --new-admin-key${format}`,
          );
          return 1;
        }
        const { record, key } = await gatehouse.keys.create(
          { name: existing === null ? "admin" : "admin (reissued)", scopes: [], permissions: [...PERMISSIONS] },
          { context: CLI_ACTOR, permissions: null },
        );
        if (existing === null) await gatehouse.storage.meta.set(INITIALISED, new Date(gatehouse.clock()).toISOString());
        // Which store, on stderr (stdout stays the key alone): run from another folder, init
        // makes a second store under ./data there, and its key is unknown to the server.
        io.err(
          `${existing === null ? "Initialised" : "Issued another admin key for"} ${describeStore(gatehouse.config)}.`,
        );
        if (values.json) {
          io.out(JSON.stringify({ adminKey: key }));
        } else if (values["key-only"]) {
          io.out(key);
        } else {
          io.out(`Admin key (shown once, store it in your secret manager):\n\n  ${key}\n`);
          const expiry = record.expiresAt === null ? "never" : new Date(record.expiresAt).toISOString();
          io.out(`id ${record.id}, permissions ${record.permissions.join(" ")}`);
          io.out(
            `It expires ${expiry}: rotate it before then (POST /v1/keys/${record.id}/rotate), or issue another with gatehouse init --new-admin-key.`,
          );
        }
        return 0;
      },
      { create: true },
    );
  },
};
