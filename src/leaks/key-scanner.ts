import { createReadStream } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { isWellFormedKey, keyPattern } from "../keys/key-format.ts";

export interface Finding {
  path: string;
  line: number;
  column: number;
  key: string;
}

const SKIP_DIRS = new Set([".git", "node_modules", ".hg", ".svn"]);
const MAX_FILE_BYTES = 20 * 1024 * 1024;

async function* files(path: string): AsyncGenerator<string> {
  const info = await stat(path);
  if (info.isFile()) {
    if (info.size <= MAX_FILE_BYTES) yield path;
    return;
  }
  if (!info.isDirectory()) return;
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (entry.isDirectory() && SKIP_DIRS.has(entry.name)) continue;
    if (entry.isSymbolicLink()) continue;
    yield* files(join(path, entry.name));
  }
}

/**
 * Finds Gatehouse keys in files: candidates by pattern, kept only when the checksum
 * matches, so random strings of the right shape are not reported.
 */
export async function* scanForKeys(paths: readonly string[], prefix: string): AsyncGenerator<Finding> {
  const pattern = keyPattern(prefix);
  for (const root of paths) {
    for await (const path of files(root)) {
      const lines = createInterface({ input: createReadStream(path, { encoding: "latin1" }), crlfDelay: Infinity });
      let number = 0;
      for await (const text of lines) {
        number++;
        for (const match of text.matchAll(pattern)) {
          if (isWellFormedKey(match[0], prefix)) yield { path, line: number, column: match.index + 1, key: match[0] };
        }
      }
    }
  }
}
