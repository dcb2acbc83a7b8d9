/**
 * Emails are identifiers here, compared after normalising: NFKC, trimmed, lower-cased.
 * (The local part is case-sensitive in theory, in practice nobody relies on it, and two
 * accounts differing only in case are a phishing tool.) Returns null when it is not an
 * address worth storing.
 */
export function normaliseEmail(input: string): string | null {
  const email = input.normalize("NFKC").trim().toLowerCase();
  if (email.length > 254) return null;
  // One @, something on each side, a dot in the domain, no spaces or controls.
  if (!/^[^\s@\p{Cc}]{1,64}@[^\s@\p{Cc}]+\.[^\s@\p{Cc}]+$/u.test(email)) return null;
  return email;
}
