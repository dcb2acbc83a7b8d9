/** Characters no new address may hold (they were accepted before 2026-12-07: see `normaliseEmail`). */
const INVISIBLE = /[\p{Cf}\p{Cs}\p{Co}]/u;

/**
 * Emails are identifiers here, compared after normalising: NFKC, trimmed, lower-cased.
 * (The local part is case-sensitive in theory, in practice nobody relies on it, and two
 * accounts differing only in case are a phishing tool.) Returns null when it is not an
 * address worth storing. Used to look accounts up too, so it stays as lenient as it ever
 * was: `newEmail` adds the rules for addresses being registered.
 */
export function normaliseEmail(input: string): string | null {
  const email = input.normalize("NFKC").trim().toLowerCase();
  if (email.length > 254) return null;
  // One @, something on each side, a dot in the domain, no spaces or controls.
  if (!/^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u.test(email)) return null;
  return email;
}

/** Why an address that `normaliseEmail` takes cannot be registered (see `newEmail`), or null. */
export type NewEmailRefusal = "INVISIBLE" | "EMPTY_LABEL";

/**
 * What `newEmail` refuses in an address `normaliseEmail` takes: an invisible character,
 * or an empty label in the domain (a leading, trailing or doubled dot). "a@b.com." is
 * the fully qualified spelling of "a@b.com", the same mailbox, and would be a second
 * account for it; "a@b..com" receives no mail at all.
 */
export function newEmailRefusal(email: string): NewEmailRefusal | null {
  if (INVISIBLE.test(email)) return "INVISIBLE";
  const domain = email.slice(email.lastIndexOf("@") + 1);
  return domain.split(".").some((label) => label.length === 0) ? "EMPTY_LABEL" : null;
}

/**
 * An address to register (a new user, a sign-up): normalised, and without invisible
 * format characters (zero-width spaces and joiners, direction marks: "a@b.com" and
 * "a@b.com\u200b" would be two look-alike accounts), lone surrogates, private-use
 * characters or empty domain labels. Accounts registered before these rules still sign
 * in: lookups use `normaliseEmail` alone.
 */
export function newEmail(input: string): string | null {
  const email = normaliseEmail(input);
  return email === null || newEmailRefusal(email) !== null ? null : email;
}
