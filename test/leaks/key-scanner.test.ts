import assert from "node:assert/strict";
import { once } from "node:events";
import { createWriteStream, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { generateKey } from "../../src/keys/key-format.ts";
import { DEFAULT_CHUNK_CHARS, type ScanEvent, scanForKeys } from "../../src/leaks/key-scanner.ts";
import { tempDir } from "../support/backends.ts";

const prefix = "gate";

async function scan(paths: string[], chunkChars?: number): Promise<ScanEvent[]> {
  const events: ScanEvent[] = [];
  for await (const event of scanForKeys(paths, { prefix, ...(chunkChars ? { chunkChars } : {}) })) events.push(event);
  return events;
}

describe("key scanner", () => {
  let dir: string;
  before(() => {
    dir = tempDir("gatehouse-scanner-");
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  // Regression: files over 20 MB were dropped without a word, so a key at the end of a
  // large log went unreported.
  test("finds a key on the last line of a file over 20 MB", async () => {
    const key = generateKey(prefix);
    const path = join(dir, "big.log");
    const out = createWriteStream(path);
    const line = `${"x".repeat(1023)}\n`;
    const lines = 21 * 1024; // 21 MiB of filler
    for (let i = 0; i < lines; i++) {
      if (!out.write(line)) await once(out, "drain");
    }
    out.end(`last line: ${key}\n`);
    await once(out, "finish");
    try {
      assert.deepEqual(await scan([path]), [{ kind: "key", path, line: lines + 1, column: 12, key }]);
    } finally {
      rmSync(path);
    }
  });

  test("a key across a chunk boundary is found once, with its line and column", async () => {
    const key = generateKey(prefix);
    const path = join(dir, "straddle.txt");
    // At the default chunk size, the boundary falls 20 characters into the key.
    const before = `line one\n${"y".repeat(DEFAULT_CHUNK_CHARS - 9 - 20 - 1)} `;
    writeFileSync(path, `${before}${key}\nend\n`);
    assert.deepEqual(await scan([path]), [{ kind: "key", path, line: 2, column: before.length - 9 + 1, key }]);
    // Every split point through the key and its neighbours, with small chunks.
    const text = `a\nb ${key} c\n${key}\n`;
    writeFileSync(path, text);
    const expected = [
      { kind: "key", path, line: 2, column: 3, key },
      { kind: "key", path, line: 3, column: 1, key },
    ];
    for (let chunk = 1; chunk <= key.length + 8; chunk++) {
      assert.deepEqual(await scan([path], chunk), expected, `chunk of ${chunk}`);
    }
  });

  // Regression: a file no longer than the tail carried between chunks (a key saved with
  // `echo "$KEY" > file`) was scanned twice and its key reported twice.
  test("a file holding just a key and a newline reports it once", async () => {
    const key = generateKey(prefix);
    const path = join(dir, "just-a-key");
    for (const text of [`${key}\n`, `${key} `, `${key}`, ` ${key}\n`]) {
      writeFileSync(path, text);
      const column = text.startsWith(" ") ? 2 : 1;
      assert.deepEqual(await scan([path]), [{ kind: "key", path, line: 1, column, key }], JSON.stringify(text));
    }
  });

  test("a chunk boundary does not make a key out of part of a longer token", async () => {
    const key = generateKey(prefix);
    const path = join(dir, "glued.txt");
    writeFileSync(path, `x${key} ${key}y my_${key}\n`);
    for (let chunk = 1; chunk <= key.length + 8; chunk++) {
      assert.deepEqual(await scan([path], chunk), [], `chunk of ${chunk}`);
    }
  });

  // Regression: .git, node_modules and symbolic links were passed over in silence.
  test("every path not read is reported with the reason", async () => {
    const key = generateKey(prefix);
    const tree = join(dir, "tree");
    mkdirSync(join(tree, ".git"), { recursive: true });
    mkdirSync(join(tree, "node_modules"));
    mkdirSync(join(tree, "src"));
    writeFileSync(join(tree, ".git", "config"), `token = ${key}\n`);
    writeFileSync(join(tree, "src", "app.ts"), `const k = "${key}";\n`);
    symlinkSync(join(tree, "src", "app.ts"), join(tree, "link.ts"));
    symlinkSync(tree, join(tree, "src", "loop"));
    const events = await scan([tree]);
    const skipped = events
      .filter((e) => e.kind === "skipped")
      .map((e) => [e.path, e.reason] as const)
      .sort(([a], [b]) => a.localeCompare(b));
    assert.deepEqual(
      skipped.map(([path]) => path),
      [join(tree, ".git"), join(tree, "link.ts"), join(tree, "node_modules"), join(tree, "src", "loop")],
    );
    assert.match(skipped[0]?.[1] ?? "", /version-control store .*compressed/);
    assert.match(skipped[1]?.[1] ?? "", /symbolic link .*loop or lead outside/);
    assert.match(skipped[2]?.[1] ?? "", /dependencies/);
    const found = events.filter((e) => e.kind === "key");
    assert.deepEqual(found, [{ kind: "key", path: join(tree, "src", "app.ts"), line: 1, column: 12, key }]);
    // A link named on the command line is the caller's choice: it is followed.
    assert.equal((await scan([join(tree, "link.ts")])).length, 1);
  });

  // Regression: a path that could not be read was `skipped`, like .git, so a scan that had
  // not looked at everything passed as clean.
  test("a path that is missing or fails to read is unreadable, not skipped", async () => {
    const missing = join(dir, "missing.txt");
    const loop = join(dir, "loop-a");
    symlinkSync(join(dir, "loop-b"), loop);
    symlinkSync(loop, join(dir, "loop-b"));
    const paths = [missing, loop];
    // An I/O error on read, whoever runs the test (root reads a file of mode 000).
    if (process.platform === "linux") paths.push("/proc/self/mem");
    assert.deepEqual(
      await scan(paths),
      [
        { kind: "unreadable", path: missing, reason: "no such file or directory (ENOENT)" },
        { kind: "unreadable", path: loop, reason: "too many levels of symbolic links (ELOOP)" },
        { kind: "unreadable", path: "/proc/self/mem", reason: "I/O error (EIO)" },
      ].slice(0, paths.length),
    );
  });

  test("a file of mode 000 is unreadable (not as root, who reads it anyway)", {
    skip: process.getuid?.() === 0,
  }, async () => {
    const path = join(dir, "secret.env");
    writeFileSync(path, `KEY=${generateKey(prefix)}\n`, { mode: 0o000 });
    assert.deepEqual(await scan([path]), [{ kind: "unreadable", path, reason: "permission denied (EACCES)" }]);
  });

  // Regression: Windows PowerShell 5 redirection writes UTF-16LE with a byte order mark;
  // read as bytes, every other character is a zero and keys in it were not seen.
  test("UTF-16 files with a byte order mark are decoded, at every chunk size", async () => {
    const key = generateKey(prefix);
    const text = `\uFEFFa\r\nb ${key} c\r\n${key}`;
    const cases = [
      ["utf16le.txt", Buffer.from(text, "utf16le")],
      ["utf16be.txt", Buffer.from(text, "utf16le").swap16()],
    ] as const;
    for (const [name, bytes] of cases) {
      const path = join(dir, name);
      writeFileSync(path, bytes);
      const expected = [
        { kind: "key", path, line: 2, column: 3, key },
        { kind: "key", path, line: 3, column: 1, key },
      ];
      for (let chunk = 1; chunk <= 2 * key.length + 8; chunk++) {
        assert.deepEqual(await scan([path], chunk), expected, `${name}, chunk of ${chunk}`);
      }
    }
    // Without a byte order mark, bytes stay bytes: a file of "ÿ" (FF) alone is not UTF-16.
    const path = join(dir, "latin1.txt");
    writeFileSync(path, Buffer.from([0xff, 0x20, ...Buffer.from(key), 0x0a]));
    assert.deepEqual(await scan([path], 1), [{ kind: "key", path, line: 1, column: 3, key }]);
  });
});
