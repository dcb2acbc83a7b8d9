/**
 * Emails are identifiers here, compared after normalising: NFKC, trimmed, lower-cased.
 * (The local part is case-sensitive in theory, in practice nobody relies on it, and two
 * accounts differing only in case are a phishing tool.) Returns null when it is not an
 * address worth storing.
 */
export function normaliseEmail(input: string): string | null {
  const email = input.normalize("NFKC").trim().toLowerCase();
  if (email.length > 254) return null;
  // One @, something on each side, a dot in the domain; no spaces, controls, invisible
  // format characters (zero-width spaces, direction marks: "a@b.com" and "a@b.com\u200b"
  // would be two look-alike accounts), lone surrogates or private-use characters.
  if (
    !/^[^\s@\p{Cc}\p{Cf}\p{Cs}\p{Co}]{1,64}@[^\s@\p{Cc}\p{Cf}\p{Cs}\p{Co}]+\.[^\s@\p{Cc}\p{Cf}\p{Cs}\p{Co}]+$/u.test(
      email,
    )
  )
    return null;
  return email;
}
