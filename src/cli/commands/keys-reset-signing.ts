import { join } from "node:path";
import { CLI_ACTOR } from "../../audit/context.ts";
import type { GatehouseConfig } from "../../config/config.ts";
import type { Command } from "../command.ts";
import { withGatehouse } from "../context.ts";

/** Which master key the command uses, so the operator can tell it is the new one. */
function masterKeySource(config: GatehouseConfig): string {
  const source = config.auth.masterKey;
  if (source && "base64" in source) return "GATEHOUSE_MASTER_KEY";
  if (source && "file" in source) return `the file ${source.file} (GATEHOUSE_MASTER_KEY_FILE)`;
  return `the file ${join(config.dataDir, "master.key")}`;
}

const CONSEQUENCES = [
  "Every access token those keys signed stops verifying: at Gatehouse at once; at resource",
  "servers verifying locally once they refetch the JWKS (within 5 minutes with the SDK's",
  "defaults; a token already in an SDK's cache of verified tokens until it expires).",
  "Refresh tokens and cookie sessions are records in storage, not signed with these keys:",
  "they stay valid, so apps get a new access token at their next refresh and nobody has to",
  "sign in again. Stop every server first, and start them with this master key afterwards.",
].join("\n");

/**
 * `gatehouse keys reset-signing --yes`: after the master key was lost (or replaced because
 * it leaked), the stored signing keys cannot be unsealed and `serve` refuses to start.
 * This deletes those keys and creates new ones under the master key now configured.
 */
export const resetSigningCommand: Command = {
  name: "keys reset-signing",
  summary: "Replace the signing keys the configured master key cannot unseal (after losing or replacing it).",
  usage: "keys reset-signing --yes [--json]",
  options: {
    yes: { type: "boolean", description: "do it (without: say what would be deleted, change nothing)" },
    json: { type: "boolean", description: "print JSON" },
  },
  epilog: [
    "Deletes the stored access-token signing keys that the master key now configured cannot",
    "unseal (they were sealed under another master key) and creates a current and a next",
    "key under this one, so that `gatehouse serve` starts again.",
    "",
    CONSEQUENCES,
  ].join("\n"),
  async run({ values }, io) {
    return withGatehouse(io, async (gatehouse) => {
      const { config, keyring } = gatehouse;
      if (config.auth.signing.algorithm === "HS256") {
        io.err(
          "HS256 signs with the configured GATEHOUSE_JWT_HS256_SECRET, not with sealed keys: there is nothing to reset.",
        );
        return 1;
      }
      const source = masterKeySource(config);
      if (!values.yes) {
        const { readable, unreadable } = await keyring.storedKeysByUnsealing();
        if (unreadable.length === 0) {
          io.out(`Every signing key unseals with the master key from ${source}: nothing to reset.`);
          return 0;
        }
        io.err(
          [
            `${unreadable.length} of ${readable.length + unreadable.length} signing keys cannot be unsealed with the master key from ${source}:`,
            ...unreadable.map((record) => `  ${record.kid} (${record.state})`),
            "",
            "`gatehouse keys reset-signing --yes` deletes them and creates new keys under this master key.",
            CONSEQUENCES,
            "",
            "Nothing was changed. Run again with --yes to do it.",
          ].join("\n"),
        );
        return 1;
      }
      const { discarded, created } = await keyring.replaceUnreadable(CLI_ACTOR);
      if (values.json) {
        io.out(JSON.stringify({ discarded, created }));
      } else if (discarded.length === 0) {
        io.out(`Every signing key unseals with the master key from ${source}: nothing was changed.`);
      } else {
        io.out(
          [
            `deleted ${discarded.join(", ")}`,
            ...created.map(({ kid, state }) => `created ${kid} (${state})`),
            `(sealed with the master key from ${source}; access tokens signed with the deleted keys no longer verify)`,
          ].join("\n"),
        );
      }
      return 0;
    });
  },
};
