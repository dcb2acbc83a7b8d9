/**
 * The shape of a Gatehouse access token before any cryptography, matching the server's
 * own check (src/tokens/access-token.ts): the JWS compact serialisation only, three
 * unpadded base64url segments (RFC 7515 §7.1, §2 "Base64url Encoding"), bounded in
 * length. Padding, spaces, extra segments and the JSON serialisation never reach jose.
 */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** Gatehouse's tokens are well under 1 KiB; the server refuses anything over this too. */
export const MAX_TOKEN_LENGTH = 8192;

/**
 * Gatehouse's kids are RFC 7638 thumbprints (43 characters) or HS256 ids (22). Anything
 * else is not ours and is refused before it can name a file, a query or a refetch.
 */
export const KID = /^[A-Za-z0-9_-]{16,64}$/;

/**
 * A candidate JWT inside other text (a URL): a base64url JSON header (`{"` is `eyJ`), a
 * payload and perhaps a signature. Only candidates whose header decodes to a JSON object
 * naming an `alg` count (`isJwtLike`): the pattern alone matched owner ids such as
 * `heyJohnny.smith`.
 */
const JWT_CANDIDATES = /eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?/;

function isJwtLike(candidate: string): boolean {
  const header = candidate.slice(0, candidate.indexOf("."));
  try {
    const parsed: unknown = JSON.parse(Buffer.from(header, "base64url").toString("utf8"));
    return typeof parsed === "object" && parsed !== null && typeof (parsed as { alg?: unknown }).alg === "string";
  } catch {
    return false;
  }
}

/** Cheap bound checked before hashing a candidate for the cache lookup. */
export function withinTokenLength(candidate: unknown): candidate is string {
  return typeof candidate === "string" && candidate.length <= MAX_TOKEN_LENGTH;
}

export function hasCompactShape(candidate: unknown): candidate is string {
  return typeof candidate === "string" && candidate.length <= MAX_TOKEN_LENGTH && COMPACT_JWS.test(candidate);
}

/**
 * Where each JWT in `text` starts and ends. A candidate that is not one is stepped past
 * by three characters, not skipped whole: in `heyJohnny.<jwt>` the non-token candidate
 * `eyJohnny.<header>.<payload>` swallowed the token (reviewer).
 */
function* jwtSpans(text: string): Generator<[number, number]> {
  const pattern = new RegExp(JWT_CANDIDATES.source, "g");
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) {
    if (isJwtLike(match[0])) yield [match.index, match.index + match[0].length];
    else pattern.lastIndex = match.index + 3;
  }
}

/** True when `text` holds a JWT anywhere in it. */
export function containsTokenShape(text: string): boolean {
  return !jwtSpans(text).next().done;
}

/** `text` with every JWT in it replaced by `replacement` (for logging a URL). */
export function redactTokens(text: string, replacement: string): string {
  let out = "";
  let from = 0;
  for (const [start, end] of jwtSpans(text)) {
    out += text.slice(from, start) + replacement;
    from = end;
  }
  return from === 0 ? text : out + text.slice(from);
}
