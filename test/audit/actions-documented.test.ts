import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const SRC = fileURLToPath(new URL("../../src", import.meta.url));
const DOC = new URL("../../docs/audit.md", import.meta.url);

/**
 * The audit actions the code writes: every `action: "<area>.<name>"` literal under src/.
 * Audit events are built with auditEvent(context, at, { action: "…", … }), so a new action
 * appears here the moment it is written; only key-service's refusals pass the action on
 * in a variable, and their actions are written as literals on success too.
 */
function actionsInCode(): string[] {
  const found = new Set<string>();
  for (const entry of readdirSync(SRC, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const text = readFileSync(join(entry.parentPath, entry.name), "utf8");
    for (const match of text.matchAll(/\baction: "([a-z_]+\.[a-z_]+)"/g)) found.add(match[1] as string);
  }
  return [...found].sort();
}

/** The first column of the table in docs/audit.md whose header is `| Action | Outcome | Written when | Detail |`. */
function actionsDocumented(): Array<{ action: string; outcome: string; when: string }> {
  const lines = readFileSync(DOC, "utf8").split("\n");
  const header = lines.findIndex((line) =>
    /^\|\s*Action\s*\|\s*Outcome\s*\|\s*Written when\s*\|\s*Detail\s*\|$/.test(line.trim()),
  );
  assert.ok(header >= 0, "docs/audit.md has a | Action | Outcome | Written when | Detail | table");
  const rows = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.trim().startsWith("|")) break;
    const [action = "", outcome = "", when = ""] = line
      .trim()
      .slice(1, -1)
      .split("|")
      .map((cell) => cell.trim());
    const name = /^`([a-z_]+\.[a-z_]+)`$/.exec(action);
    assert.ok(name, `the action is in backticks: ${line}`);
    rows.push({ action: name[1] as string, outcome, when });
  }
  return rows;
}

test("docs/audit.md lists exactly the audit actions the code writes", () => {
  const code = actionsInCode();
  assert.ok(code.length >= 20, `found the actions in src (${code.length})`);
  const rows = actionsDocumented();
  const documented = rows.map((row) => row.action);
  assert.equal(new Set(documented).size, documented.length, "no action is listed twice");
  assert.deepEqual(documented.toSorted(), code);
  for (const row of rows) {
    assert.match(row.outcome, /^(success|failure|success, failure)$/, `${row.action} outcome`);
    assert.ok(row.when.length > 20, `${row.action} says when it is written`);
  }
});
