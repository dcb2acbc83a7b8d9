import type { ZxcvbnFactory } from "@zxcvbn-ts/core";

/** Longest password accepted: long passphrases are welcome, megabytes of input are not. */
export const MAX_PASSWORD_LENGTH = 1024;

export type PasswordRejection = "TOO_SHORT" | "TOO_LONG" | "TOO_COMMON" | "NOT_TEXT";

const MESSAGES: Record<PasswordRejection, (policy: { minLength: number }) => string> = {
  TOO_SHORT: ({ minLength }) => `Use at least ${minLength} characters; a passphrase of several words is easiest.`,
  TOO_LONG: () => `Use at most ${MAX_PASSWORD_LENGTH} characters.`,
  NOT_TEXT: () =>
    "The password holds a lone surrogate (half of a character that JSON can escape but no keyboard types): it would be hashed as U+FFFD, and other spellings would match it. Use real characters.",
  TOO_COMMON: () =>
    "This password is too common or too easy to guess (it is on lists attackers try first, or is built from your email address). Choose another; a passphrase of several unrelated words works well.",
};

/**
 * NIST SP 800-63B §5.1.1.2 and OWASP ASVS V2.1: a minimum length, no composition rules,
 * no truncation, every Unicode character allowed (after NFKC normalisation), and
 * candidates checked against lists of common and compromised passwords.
 *
 * The check is zxcvbn (the maintained TypeScript port, `@zxcvbn-ts`) with its common
 * password and name dictionaries: it catches the top lists and also their variants
 * (`P@ssw0rd1!`, keyboard walks, dates, the user's own email), which a plain list misses.
 */
export class PasswordPolicy {
  readonly minLength: number;
  private readonly minScore: number;
  private estimatorInstance: Promise<ZxcvbnFactory> | undefined;

  constructor(options: { minLength: number; minScore: number }) {
    this.minLength = options.minLength;
    this.minScore = options.minScore;
  }

  /**
   * Loaded and built on first use: the dictionaries' module alone holds ~3 MB of heap once
   * imported, and the ranked dictionaries built from it tens of megabytes, which a
   * deployment that only verifies API keys should not pay for.
   */
  private estimator(): Promise<ZxcvbnFactory> {
    this.estimatorInstance ??= (async () => {
      const [{ ZxcvbnFactory }, common] = await Promise.all([
        import("@zxcvbn-ts/core"),
        import("@zxcvbn-ts/language-common"),
      ]);
      return new ZxcvbnFactory({
        dictionary: { ...common.dictionary },
        graphs: common.adjacencyGraphs,
        // Only the first 256 characters are estimated (it is quadratic); a passphrase that
        // long is not weak for lack of the rest. The whole password is still hashed.
        maxLength: 256,
      });
    })();
    // A failed import is not cached: the next check tries again.
    this.estimatorInstance.catch(() => {
      this.estimatorInstance = undefined;
    });
    return this.estimatorInstance;
  }

  /** The form passwords are hashed and checked in (NIST: normalise Unicode, NFKC). */
  static normalise(password: string): string {
    return password.normalize("NFKC");
  }

  /** Why the password is refused, or null when it is acceptable. */
  async check(password: string, context: { email: string | null }): Promise<PasswordRejection | null> {
    // Hashing encodes as UTF-8, where every lone surrogate becomes U+FFFD: "\ud800" and
    // "\udc00" would be the same password.
    if (!password.isWellFormed()) return "NOT_TEXT";
    const normalised = PasswordPolicy.normalise(password);
    const length = [...normalised].length;
    if (length < this.minLength) return "TOO_SHORT";
    if (length > MAX_PASSWORD_LENGTH) return "TOO_LONG";
    const inputs = ["gatehouse"];
    if (context.email) {
      const local = context.email.split("@")[0] ?? "";
      inputs.push(context.email, local, ...context.email.split(/[@.+_-]/).filter((part) => part.length >= 3));
    }
    const estimator = await this.estimator();
    // Judged by its weakest form: zxcvbn scores " password " or "_password_" as a
    // dictionary word between two brute-forced characters (over 10^6 guesses, score 2),
    // and "p a s s w o r d" as a run of single letters, while an attacker's rules try
    // those right after the word itself.
    for (const form of PasswordPolicy.forms(normalised)) {
      if (estimator.check(form, inputs).score < this.minScore) return "TOO_COMMON";
    }
    return null;
  }

  /**
   * The password as given, then without its spaces and control characters, then also
   * without the symbols around it: distinct forms only, none empty. A passphrase keeps its
   * strength without spaces ("plankton vinyl harbour sleet"); a padded common word does not.
   */
  private static forms(password: string): string[] {
    const squeezed = password.replace(/[\s\p{Cc}]+/gu, "");
    const core = squeezed.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "");
    return [...new Set([password, squeezed, core])].filter((form) => form.length > 0);
  }

  message(rejection: PasswordRejection): string {
    return MESSAGES[rejection]({ minLength: this.minLength });
  }
}
