/**
 * The shape of a Gatehouse API key (src/keys/key-format.ts in Gatehouse):
 * `<prefix>_<43 base62 random><6 base62 CRC32>`, the prefix 2–12 lowercase letters or
 * digits starting with a letter. The SDK checks only the shape, not the checksum or the
 * prefix, which the server knows: enough to answer junk without a round trip, and to
 * spot a key pasted into a URL.
 */
const KEY_BODY = "[a-z][a-z0-9]{1,11}_[0-9A-Za-z]{49}";
const KEY_SHAPE = new RegExp(`^${KEY_BODY}$`);
const KEY_INSIDE = new RegExp(`(?<![A-Za-z0-9_])${KEY_BODY}(?![A-Za-z0-9])`);

export function hasKeyShape(candidate: unknown): candidate is string {
  return typeof candidate === "string" && KEY_SHAPE.test(candidate);
}

/** True when `text` contains something shaped like a key anywhere in it. */
export function containsKeyShape(text: string): boolean {
  return KEY_INSIDE.test(text);
}

/**
 * Scope names as Gatehouse accepts them: RFC 6749 §3.3 scope-token characters minus the
 * quote and backslash, 1–128 characters, at most 64 per request. The same rule makes a
 * scope safe inside a quoted `scope="…"` of WWW-Authenticate (RFC 6750 §3).
 */
const SCOPE_NAME = /^[!#-[\]-~]{1,128}$/;
export const MAX_SCOPES = 64;

/**
 * Frozen scope lists that passed `assertScopes`: a guard checks its route's list once and
 * freezes it, and the verifier, which checks what it is given on every call, then finds
 * it here instead of testing each name again. Only frozen lists: they cannot change after
 * the check.
 */
const checkedScopeLists = new WeakSet<readonly string[]>();

/** Caller mistake, so a TypeError (thrown when a route is declared, not per request). */
export function assertScopes(scopes: unknown): asserts scopes is readonly string[] {
  if (!Array.isArray(scopes)) throw new TypeError("scopes must be an array of scope names");
  if (checkedScopeLists.has(scopes)) return;
  if (scopes.length > MAX_SCOPES) throw new TypeError(`at most ${MAX_SCOPES} scopes may be required`);
  for (const scope of scopes) {
    if (typeof scope !== "string" || !SCOPE_NAME.test(scope)) {
      throw new TypeError(`invalid scope name ${JSON.stringify(scope)}: 1–128 visible ASCII characters, no " or \\`);
    }
  }
  if (Object.isFrozen(scopes)) checkedScopeLists.add(scopes);
}

/** `scopes` checked and frozen: what a guard keeps for its route. */
export function checkedScopeList(scopes: readonly string[] | undefined): readonly string[] {
  const list = Object.freeze([...(scopes ?? [])]);
  assertScopes(list);
  return list;
}
