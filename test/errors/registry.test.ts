import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { ERROR_CODES } from "../../src/errors/codes.ts";

const DOC = new URL("../../docs/errors.md", import.meta.url);

/** The rows of the table in docs/errors.md whose header is `| Code | Status | Title | When |`. */
function documentedCodes(): Array<{ code: string; status: number; title: string; when: string }> {
  const lines = readFileSync(DOC, "utf8").split("\n");
  const header = lines.findIndex((line) => /^\|\s*Code\s*\|\s*Status\s*\|\s*Title\s*\|\s*When\s*\|$/.test(line.trim()));
  assert.ok(header >= 0, "docs/errors.md has a | Code | Status | Title | When | table");
  assert.match(lines[header + 1] ?? "", /^\|(\s*:?-+:?\s*\|){4}$/, "the header is followed by a separator row");
  const rows = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.trim().startsWith("|")) break;
    const cells = line
      .trim()
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((cell) => cell.trim());
    assert.equal(cells.length, 4, `four cells: ${line}`);
    const [code, status, title, when] = cells as [string, string, string, string];
    const name = /^`([A-Z][A-Z0-9_]*)`$/.exec(code);
    assert.ok(name, `the code is in backticks: ${code}`);
    assert.match(status, /^\d{3}$/, `status: ${line}`);
    rows.push({ code: name[1] as string, status: Number(status), title, when });
  }
  return rows;
}

test("docs/errors.md lists exactly the codes of ERROR_CODES, with their statuses and titles", () => {
  const rows = documentedCodes();
  const documented = rows.map((row) => row.code);
  assert.equal(new Set(documented).size, documented.length, "no code is listed twice");
  assert.deepEqual(documented.toSorted(), Object.keys(ERROR_CODES).toSorted());
  for (const row of rows) {
    const registered = ERROR_CODES[row.code as keyof typeof ERROR_CODES];
    assert.equal(row.status, registered.status, `${row.code} status`);
    assert.equal(row.title, registered.title, `${row.code} title`);
    assert.ok(row.when.length > 10, `${row.code} says when it is used`);
  }
});

test("every registered code is an HTTP error status with a title", () => {
  for (const [code, { status, title }] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^[A-Z][A-Z0-9_]*$/);
    assert.ok(status >= 400 && status <= 599, `${code}: ${status}`);
    assert.ok(title.length > 0 && !title.endsWith("."), `${code}: title is a short phrase`);
  }
});
