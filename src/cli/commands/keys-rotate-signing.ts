import { CLI_ACTOR } from "../../audit/context.ts";
import type { Command } from "../command.ts";
import { withGatehouse } from "../context.ts";

/**
 * `gatehouse keys rotate-signing`: the published next key starts signing, the current
 * one retires (still published until every token it signed has expired), and a new next
 * key is published. Safe to run while servers are up: they pick the change up within
 * 30 s, and verifiers meeting the new kid refetch the JWKS.
 */
export const rotateSigningCommand: Command = {
  name: "keys rotate-signing",
  summary: "Rotate the access-token signing key (next -> current -> retired).",
  usage: "keys rotate-signing [--json]",
  options: { json: { type: "boolean", description: "print JSON" } },
  async run({ values }, io) {
    return withGatehouse(io, async (gatehouse) => {
      if (gatehouse.config.auth.signing.algorithm === "HS256") {
        io.err(
          "HS256 uses the configured secret, which is not rotated here: set a new GATEHOUSE_JWT_HS256_SECRET (tokens signed with the old one stop verifying).",
        );
        return 1;
      }
      const rotated = await gatehouse.keyring.rotate(CLI_ACTOR);
      if (!rotated) {
        io.err(
          "Another node rotated the signing key at the same moment; nothing was changed. Run again to rotate once more.",
        );
        return 1;
      }
      if (values.json) io.out(JSON.stringify(rotated));
      else
        io.out(
          `signing with ${rotated.current}\nretired ${rotated.retired} (published until its tokens expire)\nnext ${rotated.next} (published, not signing yet)`,
        );
      return 0;
    });
  },
};
