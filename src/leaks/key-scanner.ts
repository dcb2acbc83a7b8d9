import { createReadStream, type Dirent, type Stats } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { isWellFormedKey, keyLength, keyPattern } from "../keys/key-format.ts";

export interface Finding {
  kind: "key";
  path: string;
  line: number;
  column: number;
  key: string;
}

/** A path the scan did not read on purpose, and why: a scan must never pass over a file in silence. */
export interface Skipped {
  kind: "skipped";
  path: string;
  reason: string;
}

/**
 * A path the scan meant to read and could not (missing, permission denied, an I/O
 * error): unlike `Skipped`, the scan is incomplete, and a caller must not call it clean.
 */
export interface Unreadable {
  kind: "unreadable";
  path: string;
  reason: string;
}

export type ScanEvent = Finding | Skipped | Unreadable;

// Not read, but reported. Version-control stores keep most of their history in packed,
// zlib-compressed objects, where a key is not visible as text: scanning them would only
// suggest a check that was not made (scan a checkout of each revision, or use a
// history-aware scanner). Dependencies are other people's code, and large.
const SKIP_DIRS = new Map([
  [".git", "version-control store (its packed objects are compressed, so keys in them cannot be seen)"],
  [".hg", "version-control store (its history is compressed, so keys in it cannot be seen)"],
  [".svn", "version-control store"],
  ["node_modules", "installed dependencies"],
]);

// Symbolic links inside a tree are not followed: they can loop, or lead out of the tree
// being scanned (to a home directory, to `/`). A path given on the command line is
// followed, since the caller chose it.
const SYMLINK_REASON = "symbolic link (not followed: links can loop or lead outside the tree)";

/** Read size; memory stays at about this much per file, whatever the file's size. */
export const DEFAULT_CHUNK_CHARS = 1024 * 1024;

const ERROR_NAMES: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EIO: "I/O error",
  ELOOP: "too many levels of symbolic links",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
};

/** The event for a path whose stat, listing or reading failed with `error`, or null when it is no file-system error. */
function unreadable(path: string, error: unknown): Unreadable | null {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (typeof code !== "string") return null;
  const name = ERROR_NAMES[code];
  return { kind: "unreadable", path, reason: name === undefined ? code : `${name} (${code})` };
}

async function* entries(path: string): AsyncGenerator<ScanEvent | { kind: "file"; path: string }> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    const event = unreadable(path, error);
    if (event === null) throw error;
    yield event;
    return;
  }
  if (info.isFile()) {
    yield { kind: "file", path };
    return;
  }
  if (!info.isDirectory()) {
    // A FIFO or device could block the scan forever or never end.
    yield { kind: "skipped", path, reason: "not a regular file or directory" };
    return;
  }
  let listing: Dirent[];
  try {
    listing = await readdir(path, { withFileTypes: true });
  } catch (error) {
    const event = unreadable(path, error);
    if (event === null) throw error;
    yield event;
    return;
  }
  for (const entry of listing) {
    const child = join(path, entry.name);
    const skipDir = entry.isDirectory() ? SKIP_DIRS.get(entry.name) : undefined;
    if (skipDir) yield { kind: "skipped", path: child, reason: skipDir };
    else if (entry.isSymbolicLink()) yield { kind: "skipped", path: child, reason: SYMLINK_REASON };
    else yield* entries(child);
  }
}

/**
 * A file's text in chunks of about `chunkBytes`. latin1 maps each byte to one character,
 * so a chunk boundary never splits a character, and keys (ASCII) are found the same in
 * UTF-8 text. A file that starts with a UTF-16 byte order mark (FF FE, FE FF: what
 * Windows PowerShell 5's `>` writes) is decoded as UTF-16 instead: read as bytes, each of
 * its ASCII characters is followed or preceded by a zero, and a key in it would not be
 * seen. Lines and columns then count UTF-16 characters after the mark.
 */
async function* textChunks(path: string, chunkBytes: number): AsyncGenerator<string> {
  const stream = createReadStream(path, { highWaterMark: chunkBytes });
  let decoder: TextDecoder | null = null;
  let head: Buffer | null = Buffer.alloc(0);
  for await (const bytes of stream as AsyncIterable<Buffer>) {
    if (head === null) {
      yield decoder ? decoder.decode(bytes, { stream: true }) : bytes.toString("latin1");
      continue;
    }
    // The first two bytes decide the encoding; chunks may be smaller than that.
    head = Buffer.concat([head, bytes]);
    if (head.length < 2) continue;
    decoder = utf16Decoder(head);
    yield decoder ? decoder.decode(head, { stream: true }) : head.toString("latin1");
    head = null;
  }
  if (head !== null && head.length > 0) yield head.toString("latin1");
  if (decoder) yield decoder.decode();
}

/** A UTF-16 decoder (it drops the byte order mark) when `head` starts with one, else null. */
function utf16Decoder(head: Buffer): TextDecoder | null {
  if (head[0] === 0xff && head[1] === 0xfe) return new TextDecoder("utf-16le");
  if (head[0] === 0xfe && head[1] === 0xff) return new TextDecoder("utf-16be");
  return null;
}

/**
 * Scans one file in chunks, however large, with bounded memory. Each window is the tail
 * of the previous one (a key's length and the character before it) plus the next chunk,
 * so a key split across two chunks is found whole, once.
 */
async function* scanFile(path: string, prefix: string, chunkChars: number): AsyncGenerator<Finding> {
  const pattern = keyPattern(prefix);
  const carryChars = keyLength(prefix) + 1;
  let carry = "";
  let windowStart = 0; // offset in the file of the window's first character
  let line = 1;
  let lineStart = 0;
  let counted = 0; // newlines are counted up to here
  // Where the last key reported starts: a file no longer than the carried-over tail is
  // scanned again whole at the end, and must not report its key twice.
  let reportedAt = -1;
  const countLinesTo = (window: string, offset: number) => {
    let i = window.indexOf("\n", counted - windowStart);
    while (i !== -1 && windowStart + i < offset) {
      line++;
      lineStart = windowStart + i + 1;
      i = window.indexOf("\n", i + 1);
    }
    counted = offset;
  };
  const findings = function* (window: string, atEnd: boolean): Generator<Finding> {
    for (const match of window.matchAll(pattern)) {
      // Each candidate is judged in the one window that holds it and both neighbours. At
      // the start of a carried-over window the left neighbour is lost (the previous window,
      // which had it, judged that candidate); at the end of a window the key may go on into
      // the next chunk. So nothing is reported twice, and nothing from half a token.
      if (match.index === 0 && windowStart > 0) continue;
      if (match.index + match[0].length === window.length && !atEnd) continue;
      if (!isWellFormedKey(match[0], prefix)) continue;
      const start = windowStart + match.index;
      if (start <= reportedAt) continue;
      reportedAt = start;
      countLinesTo(window, start);
      yield { kind: "key", path, line, column: start - lineStart + 1, key: match[0] };
    }
  };
  for await (const chunk of textChunks(path, chunkChars)) {
    const window = carry + chunk;
    yield* findings(window, false);
    const next = Math.max(0, window.length - carryChars);
    countLinesTo(window, windowStart + next);
    carry = window.slice(next);
    windowStart += next;
  }
  yield* findings(carry, true);
}

/**
 * Finds Gatehouse keys in files: candidates by pattern, kept only when the checksum
 * matches, so random strings of the right shape are not reported. Every path not read is
 * reported with the reason: `skipped` when on purpose, `unreadable` when it failed (a
 * path given that does not exist too).
 */
export async function* scanForKeys(
  paths: readonly string[],
  options: { prefix: string; chunkChars?: number },
): AsyncGenerator<ScanEvent> {
  const chunkChars = options.chunkChars ?? DEFAULT_CHUNK_CHARS;
  for (const root of paths) {
    for await (const entry of entries(root)) {
      if (entry.kind !== "file") {
        yield entry;
        continue;
      }
      try {
        yield* scanFile(entry.path, options.prefix, chunkChars);
      } catch (error) {
        const event = unreadable(entry.path, error);
        if (event === null) throw error;
        yield event;
      }
    }
  }
}
