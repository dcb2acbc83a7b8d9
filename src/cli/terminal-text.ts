/**
 * Control characters (C0, DEL, C1) and the invisible bidirectional formatting characters
 * (marks, embeddings, overrides, isolates).
 */
function unprintable(code: number): boolean {
  return (
    code < 0x20 ||
    (code >= 0x7f && code <= 0x9f) ||
    code === 0x061c ||
    code === 0x200e ||
    code === 0x200f ||
    (code >= 0x202a && code <= 0x202e) ||
    (code >= 0x2066 && code <= 0x2069)
  );
}

/**
 * Text that came from outside (a key's name or revocation reason, which any holder of
 * keys:write sets; a scanned file's path) as the CLI may print it on a terminal: each
 * control or bidirectional formatting character written as an escape (`\x1b`, `\u202e`),
 * so nothing stored or found can move the cursor, clear or recolour the screen, hide the
 * rest of a line or reorder it. A key named "…\r<another key's line>" or ending in ESC[8m
 * (which hides what follows: the key's permissions) shows for what it is.
 */
export function terminalText(text: string): string {
  let shown = "";
  for (const character of text) {
    const code = character.charCodeAt(0);
    if (!unprintable(code)) shown += character;
    else if (code < 0x100) shown += `\\x${code.toString(16).padStart(2, "0")}`;
    else shown += `\\u${code.toString(16).padStart(4, "0")}`;
  }
  return shown;
}
