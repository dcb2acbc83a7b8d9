import { CLI_ACTOR } from "../../audit/context.ts";
import { JWKS_MAX_AGE_SECONDS } from "../../signing/keyring.ts";
import type { Command } from "../command.ts";
import { withGatehouse } from "../context.ts";

/**
 * `gatehouse keys rotate-signing`: the published next key starts signing, the current
 * one retires (still published until every token it signed has expired), and a new next
 * key is published. Safe to run while servers are up: they pick the change up within
 * 30 s, and verifiers meeting the new kid refetch the JWKS.
 *
 * Refused, unless --force, while the next key has been published for less than the
 * JWKS's cache lifetime: a second rotation right after a first (two operators, a retried
 * script) would make a key that verifiers may not have fetched yet sign at once.
 */
export const rotateSigningCommand: Command = {
  name: "keys rotate-signing",
  summary: "Rotate the access-token signing key (next -> current -> retired).",
  usage: "keys rotate-signing [--json] [--force]",
  options: {
    json: { type: "boolean", description: "print JSON" },
    force: {
      type: "boolean",
      description: `rotate even if the next key was published less than ${JWKS_MAX_AGE_SECONDS / 60} minutes ago (e.g. the current key leaked)`,
    },
  },
  async run({ values }, io) {
    return withGatehouse(io, async (gatehouse) => {
      if (gatehouse.config.auth.signing.algorithm === "HS256") {
        io.err(
          "HS256 uses the configured secret, which is not rotated here: set a new GATEHOUSE_JWT_HS256_SECRET (tokens signed with the old one stop verifying).",
        );
        return 1;
      }
      // Loaded first: keys this master key cannot unseal are the first thing to report.
      await gatehouse.keyring.start();
      const current = (await gatehouse.keyring.signingKey()).kid;
      const publishedFor = await gatehouse.keyring.nextKeyPublishedFor();
      if (!values.force && publishedFor !== null && publishedFor < JWKS_MAX_AGE_SECONDS * 1000) {
        const wait = Math.ceil((JWKS_MAX_AGE_SECONDS * 1000 - publishedFor) / 1000);
        io.err(
          `The next signing key was published ${Math.floor(publishedFor / 1000)} s ago; verifiers may cache the JWKS for ${JWKS_MAX_AGE_SECONDS} s and refuse its tokens until they fetch it again. Nothing was changed: run again in ${wait} s, or with --force to rotate now (the current key leaked, say).`,
        );
        return 1;
      }
      // Only the key found current above: a run overlapping another (whose rotation landed
      // after this one's check) must not rotate again and make the brand-new next key sign.
      const rotated = await gatehouse.keyring.rotate(CLI_ACTOR, { onlyIfCurrent: current });
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
