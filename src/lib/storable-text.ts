/**
 * Why text cannot be stored as it is, or null when it can. A lone surrogate (JSON can
 * escape one: "\ud800") is not Unicode text: storage would keep U+FFFD in its place, so
 * what a read answers would differ from what was written. PostgreSQL's text cannot hold
 * U+0000; it is refused on both backends alike.
 */
export function unstorableText(value: string): string | null {
  if (!value.isWellFormed()) return "must be valid Unicode text (it holds a lone surrogate)";
  if (value.includes("\u0000")) return "must not contain the character U+0000";
  return null;
}

/**
 * The text with what storage cannot keep replaced by U+FFFD, for text Gatehouse records
 * but cannot send back to be fixed (what a leak report says about where a key was found).
 */
export function storableText(value: string): string {
  return unstorableText(value) === null ? value : value.toWellFormed().replaceAll("\u0000", "\uFFFD");
}
