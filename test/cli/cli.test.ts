import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { request as httpsRequest } from "node:https";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { generateKey, keyHint } from "../../src/keys/key-format.ts";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import { tempDir } from "../support/backends.ts";
import { keyRecord } from "../support/records.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const BIN = join(ROOT, "bin", "gatehouse.js");

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** The parent's environment without any GATEHOUSE_* setting, plus `env`. */
function environment(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("GATEHOUSE_")));
  return { ...clean, NODE_NO_WARNINGS: "1", ...env };
}

/** Runs the real CLI as a child process and collects what it prints. */
function cli(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: environment(env) });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
    });
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** `gatehouse serve` as a child process, on a port the OS picks. */
interface Served {
  url: string;
  output(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number | null>;
  child: ChildProcess;
}

function serve(env: Record<string, string>): Promise<Served> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, "serve"], {
      cwd: ROOT,
      env: environment({ GATEHOUSE_PORT: "0", ...env }),
    });
    let stdout = "";
    let stderr = "";
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    child.stderr.on("data", (chunk) => {
      stderr += chunk;
    });
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      // Fastify logs one JSON line "Server listening at <url>" once the socket is bound.
      const match = /"msg":"Server listening at (https?:\/\/127\.0\.0\.1:\d+)"/.exec(stdout);
      if (match?.[1] && !resolved) {
        resolved = true;
        resolve({
          url: match[1],
          output: () => stdout + stderr,
          child,
          stop: () => {
            child.kill("SIGTERM");
            return exited;
          },
        });
      }
    });
    let resolved = false;
    void exited.then((code) => {
      if (!resolved) reject(new Error(`serve exited with ${code} before listening:\n${stdout}\n${stderr}`));
    });
  });
}

// biome-ignore lint/suspicious/noExplicitAny: answers are read field by field and asserted.
async function call(url: string, key: string, method = "GET", body?: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(url, {
    method,
    headers: {
      authorization: `Bearer ${key}`,
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

const NO_STACK = /\n\s+at |node:internal|\.ts:\d+:\d+/;

/** Commands listed under "Commands:" in a help text: the first word of each line. */
function commandsIn(help: string): string[] {
  const lines = help.split("\n");
  const start = lines.findIndex((line) => line.trim() === "Commands:");
  assert.ok(start >= 0, `a Commands: section in\n${help}`);
  const names = [];
  for (const line of lines.slice(start + 1)) {
    const match = /^\s{2}(\S+)\s/.exec(line);
    if (!match?.[1]) break;
    names.push(match[1]);
  }
  return names;
}

describe("gatehouse CLI", () => {
  const dataDir = tempDir("gatehouse-cli-");
  const env = { GATEHOUSE_DATA_DIR: dataDir, GATEHOUSE_LOG_LEVEL: "info" };
  let adminKey: string;
  after(() => rmSync(dataDir, { recursive: true, force: true }));

  before(async () => {
    const init = await cli(["init", "--json"], env);
    assert.equal(init.code, 0, init.stderr);
    const lines = init.stdout.trim().split("\n");
    assert.equal(lines.length, 1, "init --json prints one line");
    const parsed = JSON.parse(lines[0] as string);
    assert.deepEqual(Object.keys(parsed), ["adminKey"]);
    adminKey = parsed.adminKey;
    assert.match(adminKey, /^gate_[0-9A-Za-z]{49}$/);
    // Which store it made, on stderr: run from another folder, init makes another store.
    assert.equal(init.stderr, `Initialised SQLite ${join(dataDir, "gatehouse.db")}.\n`);
  });

  test("--help works on every command and subcommand", async () => {
    const top = await cli(["--help"], env);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: gatehouse <command>/);
    const commands = commandsIn(top.stdout);
    assert.ok(commands.includes("serve") && commands.includes("init") && commands.includes("keys"), commands.join());
    for (const args of [["help"], ["-h"]]) {
      const r = await cli(args, env);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, top.stdout);
    }
    const keysHelp = await cli(["keys", "--help"], env);
    assert.equal(keysHelp.code, 0);
    const subcommands = commandsIn(keysHelp.stdout);
    for (const name of ["create", "list", "revoke", "rotate", "scan"]) assert.ok(subcommands.includes(name), name);
    const all = [...commands.map((c) => [c]), ...subcommands.map((s) => ["keys", s])];
    const runs = await Promise.all(all.map((words) => cli([...words, "--help"], env)));
    runs.forEach((r, i) => {
      const words = all[i]?.join(" ") ?? "";
      assert.equal(r.code, 0, `${words} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`Usage: gatehouse ${words}\\b`), words);
      assert.equal(r.stderr, "", words);
    });
    const short = await cli(["keys", "create", "-h"], env);
    assert.equal(short.code, 0);
    assert.match(short.stdout, /Usage: gatehouse keys create/);
  });

  test("no command prints the usage and exits 2; an unknown command or option exits 2", async () => {
    const none = await cli([], env);
    assert.equal(none.code, 2);
    assert.match(none.stdout + none.stderr, /Usage: gatehouse <command>/);
    const wrong = [["launch"], ["keys", "explode"], ["key", "list"], ["keys", "lsit"]];
    const runs = await Promise.all(wrong.map((args) => cli(args, env)));
    for (const [i, args] of wrong.entries()) {
      const r = runs[i] as Run;
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /unknown command/, args.join(" "));
      assert.match(r.stderr, /Usage: gatehouse/, args.join(" "));
      assert.doesNotMatch(r.stderr, NO_STACK);
    }
    // A near miss is named.
    assert.match((runs[2] as Run).stderr, /unknown command "key"; did you mean keys\?/);
    assert.match((runs[3] as Run).stderr, /unknown command "lsit"; did you mean list\?/);
    assert.doesNotMatch((runs[0] as Run).stderr, /did you mean/);
    // A usage mistake found after parsing is one line too, pointing at the help.
    const missing = await cli(["keys", "create"], env);
    assert.equal(missing.stderr, "gatehouse keys create: --name is required (see gatehouse keys create --help)\n");
    // Comma-separated permissions are each a permission.
    const both = await cli(["keys", "create", "--name", "two", "--permission", "keys:read,keys:verify", "--json"], env);
    assert.equal(both.code, 0, both.stderr);
    // A reader that stops early closes the pipe: no stack trace, no failure.
    // (`true` reads nothing and is gone long before node has started: the first write fails.)
    const piped = spawnSync(
      "bash",
      ["-c", `"${process.execPath}" "${BIN}" keys list | true; echo "\${PIPESTATUS[0]}"`],
      {
        env: { ...process.env, ...env },
        encoding: "utf8",
      },
    );
    assert.doesNotMatch(piped.stderr, /EPIPE|Unhandled/);
    assert.equal(piped.stdout.trim(), "0");
    // A mistyped flag: one line of our own (not Node's, whose advice leaves a quote open).
    const flags: Array<[string[], string]> = [
      [["init", "--force"], "gatehouse init: unknown option --force (see gatehouse init --help)\n"],
      [["keys", "list", "--colour"], "gatehouse keys list: unknown option --colour (see gatehouse keys list --help)\n"],
      [
        ["keys", "scan", "--ofline", "x"],
        "gatehouse keys scan: unknown option --ofline; did you mean --offline? (see gatehouse keys scan --help)\n",
      ],
    ];
    const flagRuns = await Promise.all(flags.map(([args]) => cli(args, env)));
    for (const [i, [args, line]] of flags.entries()) {
      const r = flagRuns[i] as Run;
      assert.equal(r.code, 2, args.join(" "));
      assert.equal(r.stderr, line);
      assert.equal(r.stdout, "");
    }
  });

  test("a second init refuses; init --new-admin-key issues another key; both work on the server", async () => {
    const again = await cli(["init"], env);
    assert.equal(again.code, 1);
    assert.equal(again.stdout, "");
    assert.match(again.stderr, /already|initialised/);
    assert.match(again.stderr, /--new-admin-key/);
    assert.doesNotMatch(again.stderr, /gate_[0-9A-Za-z]{49}/);
    const reissued = await cli(["init", "--new-admin-key", "--json"], env);
    assert.equal(reissued.code, 0, reissued.stderr);
    const second = JSON.parse(reissued.stdout).adminKey;
    assert.notEqual(second, adminKey);
    // For scripts (`ADMIN=$(gatehouse init --key-only)`): the key alone on stdout, and on a
    // store initialised already, nothing on stdout and advice that can be pasted as it is.
    const refused = await cli(["init", "--key-only"], env);
    assert.equal(refused.code, 1);
    assert.equal(refused.stdout, "");
    assert.match(refused.stderr, /run: npx gatehouse init --new-admin-key --key-only$/m);
    const third = await cli(["init", "--new-admin-key", "--key-only"], env);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, /^gate_[0-9A-Za-z]{49}\n$/);
    const both = await cli(["init", "--json", "--key-only"], env);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /one of --json and --key-only \(see gatehouse init --help\)/);
    const server = await serve(env);
    try {
      for (const key of [adminKey, second, third.stdout.trim()]) {
        const keys = await call(`${server.url}/v1/keys`, key);
        assert.equal(keys.status, 200);
      }
      assert.equal((await call(`${server.url}/v1/keys`, generateKey("gate"))).status, 401);
      for (let i = 0; i < 100 && !server.output().includes("Gatehouse is ready"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(server.output().includes("Gatehouse is ready"));
      assert.ok(!server.output().includes("No admin key exists yet"), "an initialised store gets no such warning");
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test("serve on a new store says that no admin key exists yet, and how to make one", async () => {
    const fresh = tempDir("gatehouse-fresh-store-");
    try {
      const server = await serve({ GATEHOUSE_DATA_DIR: fresh, GATEHOUSE_LOG_LEVEL: "info" });
      try {
        for (let i = 0; i < 100 && !server.output().includes("No admin key"); i++) {
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.match(server.output(), /No admin key exists yet: run `npx gatehouse init --key-only`/);
      } finally {
        assert.equal(await server.stop(), 0);
      }
    } finally {
      rmSync(fresh, { recursive: true, force: true });
    }
  });

  test("serve on a port another process holds: one line that names GATEHOUSE_PORT, exit 1", async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    try {
      const address = holder.address();
      const port = typeof address === "object" && address ? address.port : 0;
      const run = await cli(["serve"], { ...env, GATEHOUSE_PORT: String(port) });
      assert.equal(run.code, 1, run.stderr);
      assert.match(run.stderr, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*GATEHOUSE_PORT`));
      assert.doesNotMatch(run.stderr, NO_STACK);
    } finally {
      holder.close();
    }
  });

  test("keys create, list, rotate and revoke", async () => {
    const created = await cli(["keys", "create", "--name", "ci", "--scope", "a", "--scope", "b", "--json"], env);
    assert.equal(created.code, 0, created.stderr);
    const { id, key } = JSON.parse(created.stdout);
    assert.match(key, /^gate_[0-9A-Za-z]{49}$/);
    const listed = await cli(["keys", "list", "--json"], env);
    assert.equal(listed.code, 0);
    const rows = listed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    const row = rows.find((r) => r.id === id);
    const expiresAt = JSON.parse(created.stdout).expiresAt;
    assert.match(expiresAt, /^\d{4}-\d{2}-\d{2}T/);
    assert.deepEqual(row, {
      id,
      name: "ci",
      hint: keyHint(key),
      status: "active",
      scopes: ["a", "b"],
      permissions: [],
      allowedAddresses: null,
      expiresAt,
    });
    // In text, the expiry date stands beside the status.
    const listedText = await cli(["keys", "list"], env);
    assert.match(
      listedText.stdout,
      new RegExp(`^${id}  \\S+  active   ${expiresAt.slice(0, 10)}  ci  \\[a b\\]$`, "m"),
    );
    // The admin key shows what it may do, in JSON and in text.
    assert.ok(rows.some((r) => r.name === "admin" && r.permissions.includes("keys:verify")));
    assert.ok(!listed.stdout.includes(key), "list never prints a key");
    assert.ok(!listed.stdout.includes(adminKey));

    const rotated = await cli(["keys", "rotate", id, "--grace", "0", "--json"], env);
    assert.equal(rotated.code, 0, rotated.stderr);
    const next = JSON.parse(rotated.stdout);
    assert.equal(next.previous, id);
    assert.notEqual(next.key, key);
    const revoked = await cli(["keys", "revoke", next.id, "--reason", "test over"], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.match(revoked.stdout, new RegExp(`revoked ${next.id}`));
    assert.ok(!revoked.stdout.includes(next.key));
    const after = (await cli(["keys", "list", "--json"], env)).stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line));
    assert.equal(after.find((r) => r.id === id)?.status, "revoked");
    assert.equal(after.find((r) => r.id === next.id)?.status, "revoked");
    // Keys bound to addresses: each --allow-address is one entry; a bad one is named by its value.
    const bound = await cli(
      ["keys", "create", "--name", "bound", "--allow-address", "10.0.0.0/8", "--allow-address", "::1", "--json"],
      env,
    );
    assert.equal(bound.code, 0, bound.stderr);
    assert.deepEqual(JSON.parse(bound.stdout).allowedAddresses, ["10.0.0.0/8", "::1"]);
    const boundText = await cli(["keys", "list"], env);
    assert.match(boundText.stdout, / {2}bound {2}\[\] {2}from: 10\.0\.0\.0\/8 ::1$/m);
    const badAddress = await cli(
      ["keys", "create", "--name", "bad", "--allow-address", "10.0.0.0/8", "--allow-address", "intranet"],
      env,
    );
    assert.equal(badAddress.code, 2);
    assert.match(badAddress.stderr, /--allow-address "intranet" must be an IPv4 or IPv6 address/);
    // Without --json: the key alone on stdout (KEY=$(gatehouse keys create …)), the note on stderr.
    const plain = await cli(["keys", "create", "--name", "plain"], env);
    assert.match(plain.stdout, /^gate_[0-9A-Za-z]{49}\n$/);
    assert.match(plain.stderr, /\(id key_\S+; shown once\)/);
    const plainId = /\(id (key_\S+);/.exec(plain.stderr)?.[1] as string;
    const plainRotated = await cli(["keys", "rotate", plainId, "--grace", "0"], env);
    assert.match(plainRotated.stdout, /^gate_[0-9A-Za-z]{49}\n$/);
    assert.match(plainRotated.stderr, new RegExp(`replaces ${plainId}; shown once`));
    const plainRevoked = await cli(["keys", "revoke", plainId], env);
    assert.match(plainRevoked.stderr, /stops accepting it within 0\.1 s/, "the CLI says when a running server follows");
    const text = await cli(["keys", "list"], env);
    assert.match(text.stdout, new RegExp(`${next.id}\\s+${keyHint(next.key)}\\s+revoked`));
    assert.match(text.stdout, /\badmin\b.*\[\]\s+permissions: .*\bkeys:verify\b/);
  });

  test("keys list shows every key, past any page size", async () => {
    // Written straight into the store: 1,100 keys through the CLI would take minutes.
    const storage = SqliteStorage.open(join(dataDir, "gatehouse.db"));
    const now = Date.now();
    await storage.keys.insertMany(Array.from({ length: 1100 }, (_, i) => keyRecord(now - i, { name: "bulk" })));
    await storage.close();
    const listed = await cli(["keys", "list", "--json"], env);
    assert.equal(listed.code, 0, listed.stderr);
    const rows = listed.stdout
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { id: string; name: string });
    assert.equal(rows.filter((row) => row.name === "bulk").length, 1100);
    assert.equal(new Set(rows.map((row) => row.id)).size, rows.length, "no key twice");
    // The oldest keys are there too: the admin key init made first.
    assert.ok(rows.some((row) => row.name === "admin"));
    const text = await cli(["keys", "list"], env);
    assert.equal(text.stdout.trim().split("\n").length, rows.length);
  });

  test("keys created, rotated and revoked by the CLI while serve runs: the server follows them", async () => {
    const server = await serve(env);
    try {
      const verify = (key: string) =>
        call(`${server.url}/v1/keys/verify`, adminKey, "POST", { key }).then((r) =>
          r.body.valid ? "VALID" : r.body.code,
        );
      // The server holds the active keys in memory; another process's writes reach it
      // through the key change log, within its polling interval.
      const eventually = async (key: string, expected: string) => {
        let seen = "";
        for (let attempt = 0; attempt < 100 && seen !== expected; attempt++) {
          seen = await verify(key);
          if (seen !== expected) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        assert.equal(seen, expected);
      };
      const created = JSON.parse(
        (await cli(["keys", "create", "--name", "live", "--scope", "a", "--json"], env)).stdout,
      );
      await eventually(created.key, "VALID");
      const rotated = JSON.parse((await cli(["keys", "rotate", created.id, "--grace", "0", "--json"], env)).stdout);
      await eventually(created.key, "REVOKED");
      await eventually(rotated.key, "VALID");
      assert.equal((await cli(["keys", "revoke", rotated.id], env)).code, 0);
      await eventually(rotated.key, "REVOKED");
      assert.equal(await verify(generateKey("gate")), "NOT_FOUND");
      // The key a resource server calls with, revoked by the CLI: refused promptly too
      // (its cached record follows the change log, not only its one-second TTL).
      const service = JSON.parse(
        (await cli(["keys", "create", "--name", "svc", "--permission", "keys:verify", "--json"], env)).stdout,
      );
      const asService = () =>
        call(`${server.url}/v1/keys/verify`, service.key, "POST", { key: created.key }).then((r) => r.status);
      assert.equal(await asService(), 200);
      assert.equal((await cli(["keys", "revoke", service.id], env)).code, 0);
      let status = 0;
      for (let attempt = 0; attempt < 100 && status !== 401; attempt++) {
        status = await asService();
        if (status !== 401) await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(status, 401);
    } finally {
      assert.equal(await server.stop(), 0);
    }
  });

  test("keys commands report mistakes in one line, without a stack trace", async () => {
    const count = async () => (await cli(["keys", "list", "--json"], env)).stdout.trim().split("\n").length;
    const before = await count();
    const cases: Array<[string[], number, RegExp]> = [
      [["keys", "create"], 2, /--name is required/],
      [["keys", "create", "--name", "x", "--permission", "root"], 2, /unknown permission.*\(known: .*keys:verify/],
      [["keys", "create", "--name", "x", "--expires-in", "soon"], 2, /whole number/],
      [
        ["keys", "create", "--name", "x", "--expires-in", "999999999"],
        2,
        /--expires-in may be at most .*GATEHOUSE_KEY_MAX_LIFETIME_SECONDS/,
      ],
      // The API's rules hold for the CLI too (the key service checks them), told in its flags.
      [
        ["keys", "create", "--name", "x", "--expires-in", "0"],
        2,
        /--expires-in must be a whole number of seconds, from 60 to the maximum key lifetime/,
      ],
      [["keys", "create", "--name", "x", "--expires-in", "10"], 2, /--expires-in must be .* from 60/],
      [["keys", "create", "--name", ""], 2, /--name must not be empty/],
      [["keys", "create", "--name", "x", "--owner", ""], 2, /--owner must not be empty/],
      [
        ["keys", "create", "--name", "x", "--scope", "a b", "--scope", ""],
        2,
        /--scope "a b" must be printable ASCII without spaces, quotes or backslashes; --scope "" must not be empty/,
      ],
      [["keys", "rotate", "key_nope"], 2, /--grace is required/],
      [["keys", "revoke"], 2, /exactly one key id/],
      [["keys", "revoke", "key_doesnotexist"], 1, /No key with id key_doesnotexist/],
      [["keys", "rotate", "key_doesnotexist", "--grace", "0"], 1, /No key with id key_doesnotexist/],
      [["keys", "scan"], 2, /at least one file or directory/],
      [["keys", "scan", join(dataDir, "no-such-dir")], 2, /no-such-dir/],
    ];
    const runs = await Promise.all(cases.map(([args]) => cli(args, env)));
    for (const [i, [args, code, message]] of cases.entries()) {
      const r = runs[i] as Run;
      assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(" "));
      assert.doesNotMatch(r.stderr, NO_STACK, args.join(" "));
    }
    assert.equal(await count(), before, "no refused create stored a key");
    // A revoked key cannot be rotated: a conflict, reported plainly.
    const { id } = JSON.parse((await cli(["keys", "create", "--name", "gone", "--json"], env)).stdout);
    await cli(["keys", "revoke", id], env);
    const conflict = await cli(["keys", "rotate", id, "--grace", "0"], env);
    assert.equal(conflict.code, 1);
    assert.match(conflict.stderr, /This key is revoked: only an active key/);
    assert.doesNotMatch(conflict.stderr, NO_STACK);
  });

  test("keys scan finds planted keys, reports their state without printing them, and exits 1 on a live one", async () => {
    const live = JSON.parse((await cli(["keys", "create", "--name", "live", "--json"], env)).stdout);
    const dead = JSON.parse((await cli(["keys", "create", "--name", "dead", "--json"], env)).stdout);
    assert.equal((await cli(["keys", "revoke", dead.id], env)).code, 0);
    const unknown = generateKey("gate");
    const wrongChecksum = `${unknown.slice(0, -1)}${unknown.endsWith("A") ? "B" : "A"}`;
    const repo = tempDir("gatehouse-scan-");
    try {
      mkdirSync(join(repo, "config", "deep"), { recursive: true });
      mkdirSync(join(repo, ".git"));
      mkdirSync(join(repo, "node_modules", "pkg"), { recursive: true });
      writeFileSync(join(repo, ".env"), `# settings\nGATEHOUSE_KEY=${live.key}\n`);
      writeFileSync(join(repo, "config", "deep", "app.json"), `{\n  "a": 1,\n  "key": "${dead.key}"\n}\n`);
      writeFileSync(join(repo, "notes.md"), `old: ${unknown} and typo ${wrongChecksum}\nmy_${live.key}\n`);
      writeFileSync(join(repo, ".git", "config"), `token = ${live.key}\n`);
      writeFileSync(join(repo, "node_modules", "pkg", "index.js"), `const k = "${live.key}";\n`);

      const json = await cli(["keys", "scan", repo, "--json"], env);
      assert.equal(json.code, 1, json.stderr);
      const lines = json.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      // One object per finding, then the summary, which counts the paths not read.
      assert.deepEqual(lines.at(-1), { summary: { found: 3, live: 1, skipped: 2, unreadable: 0 } });
      const findings = lines.slice(0, -1).sort((a, b) => a.path.localeCompare(b.path));
      assert.deepEqual(findings, [
        { path: join(repo, ".env"), line: 2, column: 15, key: keyHint(live.key), status: "live" },
        {
          path: join(repo, "config", "deep", "app.json"),
          line: 3,
          column: 11,
          key: keyHint(dead.key),
          status: "revoked",
        },
        { path: join(repo, "notes.md"), line: 1, column: 6, key: keyHint(unknown), status: "unknown" },
      ]);
      const text = await cli(["keys", "scan", repo], env);
      assert.equal(text.code, 1);
      assert.match(text.stdout, new RegExp(`\\.env:2:15\\s+${keyHint(live.key)}\\s+live`));
      assert.match(text.stderr, /3 key\(s\) found, 1 live, 2 path\(s\) skipped/);
      // The live key in .git and in node_modules is not read, but the scan says so.
      for (const output of [json.stderr, text.stderr]) {
        assert.ok(output.includes(`skipped ${join(repo, ".git")}: version-control store`), output);
        assert.ok(output.includes(`skipped ${join(repo, "node_modules")}: installed dependencies`), output);
      }
      for (const output of [json.stdout, json.stderr, text.stdout, text.stderr]) {
        for (const key of [live.key, dead.key, unknown, wrongChecksum]) {
          assert.ok(!output.includes(key), "a scan never prints a whole key");
          assert.ok(!output.includes(key.slice(9, 49)));
        }
      }
      // Once the live key is revoked, nothing live is left: exit 0.
      assert.equal((await cli(["keys", "revoke", live.id], env)).code, 0);
      const clean = await cli(["keys", "scan", repo], env);
      assert.equal(clean.code, 0, clean.stdout);
      assert.match(clean.stderr, /3 key\(s\) found, 0 live/);
      // A single file works too, and a file with no keys finds nothing.
      const single = await cli(["keys", "scan", join(repo, "notes.md"), "--json"], env);
      assert.equal(single.code, 0);
      assert.equal(single.stdout.trim().split("\n").length, 2, "one finding and the summary");
      writeFileSync(join(repo, "empty.txt"), `${wrongChecksum}\n`);
      const none = await cli(["keys", "scan", join(repo, "empty.txt")], env);
      assert.equal(none.code, 0);
      assert.equal(none.stdout, "");
      assert.match(none.stderr, /0 key\(s\) found, 0 live/);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  // Regression: --offline exited 0 whatever it found, so a CI job using it passed with
  // keys committed; and a key behind a symbolic link was passed over without a word.
  test("keys scan --offline exits 1 on any well-formed key, and names every path it skips", async () => {
    const committed = generateKey("gate");
    const repo = tempDir("gatehouse-scan-offline-");
    try {
      mkdirSync(join(repo, "src"));
      writeFileSync(join(repo, "src", "clean.ts"), "export const answer = 42;\n");
      writeFileSync(join(repo, "outside.env"), `KEY=${committed}\n`);
      symlinkSync(join(repo, "outside.env"), join(repo, "src", "linked.env"));
      // Only clean files and a link: nothing read holds a key, so exit 0, but the link is named.
      const clean = await cli(["keys", "scan", join(repo, "src"), "--offline"], env);
      assert.equal(clean.code, 0, clean.stderr);
      assert.ok(clean.stderr.includes(`skipped ${join(repo, "src", "linked.env")}: symbolic link`), clean.stderr);
      assert.match(clean.stderr, /0 key\(s\) found, 1 path\(s\) skipped/);
      // A well-formed key, state unknown offline: a leak.
      writeFileSync(join(repo, "src", "config.ts"), `export const key = "${committed}";\n`);
      const text = await cli(["keys", "scan", join(repo, "src"), "--offline"], env);
      assert.equal(text.code, 1, text.stderr);
      assert.match(text.stdout, /config\.ts:1:21\s+\S+\s+unchecked/);
      assert.match(text.stderr, /1 key\(s\) found, not checked \(--offline: each counts as a leak\)/);
      const json = await cli(["keys", "scan", join(repo, "src"), "--offline", "--json"], env);
      assert.equal(json.code, 1, json.stderr);
      const lines = json.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      assert.equal(lines[0].status, "unchecked");
      assert.deepEqual(lines.at(-1), { summary: { found: 1, live: 0, skipped: 1, unreadable: 0 } });
      for (const output of [text.stdout, text.stderr, json.stdout, json.stderr]) {
        assert.ok(!output.includes(committed.slice(9, 49)), "a scan never prints a whole key");
      }
      // Without a store, the online scan says how to scan without one.
      const storeless = await cli(["keys", "scan", join(repo, "src")], { GATEHOUSE_DATA_DIR: join(repo, "no-store") });
      assert.equal(storeless.code, 1);
      assert.match(storeless.stderr, /No initialised Gatehouse store[\s\S]*add --offline/);
      // The exit codes are documented where an operator looks.
      const help = await cli(["keys", "scan", "--help"], env);
      assert.match(help.stdout, /Exit codes:/);
      assert.match(help.stdout, /with --offline any well-formed key/);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  // Regression: an unreadable path was reported as skipped and the run exited 0 (a CI job
  // passed without having looked); one missing path among several scanned nothing.
  test("keys scan: a path it could not read or that is missing makes an incomplete run exit 2; the rest is scanned", async () => {
    const committed = generateKey("gate");
    const repo = tempDir("gatehouse-scan-incomplete-");
    try {
      mkdirSync(join(repo, "clean"));
      writeFileSync(join(repo, "clean", "app.ts"), "export const answer = 42;\n");
      mkdirSync(join(repo, "leaky"));
      writeFileSync(join(repo, "leaky", "app.env"), `KEY=${committed}\n`);
      const missing = join(repo, "no-such-file");

      // A missing path next to a clean one: the clean one is scanned, the missing one named, exit 2.
      const incomplete = await cli(["keys", "scan", "--offline", missing, join(repo, "clean")], env);
      assert.equal(incomplete.code, 2, incomplete.stderr);
      assert.ok(incomplete.stderr.includes(`could not read ${missing}: no such file or directory (ENOENT)`));
      assert.match(incomplete.stderr, /0 key\(s\) found, 0 path\(s\) skipped, 1 path\(s\) could not be read/);
      assert.match(incomplete.stderr, /The scan is incomplete/);
      assert.doesNotMatch(incomplete.stderr, NO_STACK);

      // Next to a leak: the leak is found and decides the exit code (1).
      const leak = await cli(["keys", "scan", "--offline", "--json", missing, join(repo, "leaky")], env);
      assert.equal(leak.code, 1, leak.stderr);
      const lines = leak.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line));
      assert.equal(lines[0].path, join(repo, "leaky", "app.env"));
      assert.deepEqual(lines.at(-1), { summary: { found: 1, live: 0, skipped: 0, unreadable: 1 } });

      // A file whose read fails (an I/O error: /proc/self/mem at offset 0, whoever runs it).
      if (process.platform === "linux") {
        const failing = await cli(["keys", "scan", "--offline", join(repo, "clean"), "/proc/self/mem"], env);
        assert.equal(failing.code, 2, failing.stderr);
        assert.match(failing.stderr, /could not read \/proc\/self\/mem: I\/O error \(EIO\)/);
      }

      // The help says what 2 means.
      const help = await cli(["keys", "scan", "--help"], env);
      assert.match(help.stdout, /2 {2}no leak found, but the scan is incomplete/);
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  // Regression: a path holding a key was printed whole; keys in UTF-16 files (PowerShell 5's
  // `>` writes UTF-16LE with a byte order mark) were not seen.
  test("keys scan prints a key in a path as its hint, and finds keys in UTF-16 files", async () => {
    const key = generateKey("gate");
    const repo = tempDir("gatehouse-scan-names-");
    try {
      const named = join(repo, `copy-of-${key}.env`);
      writeFileSync(named, `KEY=${key}\n`);
      const text = await cli(["keys", "scan", "--offline", repo], env);
      const json = await cli(["keys", "scan", "--offline", "--json", repo], env);
      for (const run of [text, json]) {
        assert.equal(run.code, 1, run.stderr);
        assert.ok(!(run.stdout + run.stderr).includes(key), "the key in the path is not printed whole");
        assert.ok(run.stdout.includes(join(repo, `copy-of-${keyHint(key)}.env`)), run.stdout);
      }
      // Also when the path is only named, not read: a missing one, or one skipped on purpose.
      mkdirSync(join(repo, "sub"));
      symlinkSync(named, join(repo, "sub", `link-${key}`));
      const notRead = await cli(["keys", "scan", "--offline", join(repo, "sub"), join(repo, `gone-${key}`)], env);
      assert.equal(notRead.code, 2, notRead.stderr);
      assert.ok(!notRead.stderr.includes(key), notRead.stderr);
      assert.ok(notRead.stderr.includes(`skipped ${join(repo, "sub", `link-${keyHint(key)}`)}: symbolic link`));
      assert.ok(notRead.stderr.includes(`could not read ${join(repo, `gone-${keyHint(key)}`)}`));

      rmSync(named);
      rmSync(join(repo, "sub"), { recursive: true });
      const bom = "\uFEFF";
      writeFileSync(join(repo, "le.txt"), Buffer.from(`${bom}# settings\r\nKEY=${key}\r\n`, "utf16le"));
      writeFileSync(join(repo, "be.txt"), Buffer.from(`${bom}# settings\r\nKEY=${key}\r\n`, "utf16le").swap16());
      const utf16 = await cli(["keys", "scan", "--offline", "--json", repo], env);
      assert.equal(utf16.code, 1, utf16.stderr);
      const findings = utf16.stdout
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line))
        .filter((line) => line.path !== undefined)
        .sort((a, b) => a.path.localeCompare(b.path));
      assert.deepEqual(
        findings.map(({ path, line, column }) => ({ path, line, column })),
        [
          { path: join(repo, "be.txt"), line: 2, column: 5 },
          { path: join(repo, "le.txt"), line: 2, column: 5 },
        ],
      );
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  // Regression: a key's name (any holder of keys:write sets it), a revocation's reason and a
  // scanned file's path were printed as they were, so escape sequences in them reached the
  // operator's terminal: a name ending in ESC[8m hid the rest of its line (the key's
  // permissions), and one holding "\r" and a made-up line showed that line instead.
  test("names, reasons and paths from outside are printed with their control characters escaped", async () => {
    const hostile = "ci\u001b[8m\r\u202eevil\u0007";
    const shown = "ci\\x1b[8m\\x0d\\u202eevil\\x07";
    const created = await cli(["keys", "create", "--name", hostile, "--json"], env);
    assert.equal(created.code, 0, created.stderr);
    const { id, key } = JSON.parse(created.stdout);
    const listed = await cli(["keys", "list"], env);
    const line = listed.stdout.split("\n").find((l) => l.startsWith(id)) ?? "";
    assert.ok(line.endsWith(`  ${shown}  []`), JSON.stringify(line));
    // JSON output is for programs, and JSON escapes controls itself: the name is kept as it is.
    const json = await cli(["keys", "list", "--json"], env);
    assert.ok(json.stdout.split("\n").some((l) => l.includes(id) && JSON.parse(l).name === hostile));

    const revoked = await cli(["keys", "revoke", id, "--reason", hostile], env);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.ok(revoked.stdout.endsWith(`: ${shown}\n`), JSON.stringify(revoked.stdout));

    const repo = tempDir("gatehouse-scan-controls-");
    try {
      writeFileSync(join(repo, "a\u001b[2K\rb.env"), `KEY=${key}\n`);
      mkdirSync(join(repo, "d\u001b[1A"));
      symlinkSync(join(repo, "a\u001b[2K\rb.env"), join(repo, "d\u001b[1A", "l\u009b2J"));
      const scanned = await cli(["keys", "scan", "--offline", repo], env);
      assert.equal(scanned.code, 1, scanned.stderr);
      const control = (c: string) => c !== "\n" && (c < " " || (c >= "\u007f" && c <= "\u009f"));
      for (const output of [scanned.stdout, scanned.stderr]) {
        assert.ok(![...output].some(control), JSON.stringify(output));
      }
      assert.ok(scanned.stdout.includes(join(repo, "a\\x1b[2K\\x0db.env:1:5")), scanned.stdout);
      assert.ok(scanned.stderr.includes(`skipped ${join(repo, "d\\x1b[1A", "l\\x9b2J")}: symbolic link`));
    } finally {
      rmSync(repo, { recursive: true, force: true });
    }
  });

  test("invalid configuration: exit 1 and one clear message per mistake", async () => {
    const certOnly = join(dataDir, "cert-only.pem");
    writeFileSync(certOnly, "-----BEGIN CERTIFICATE-----\n");
    // Where the server listens matters to `serve` alone; other settings to every command.
    const listening: Array<[Record<string, string>, RegExp]> = [
      [{ GATEHOUSE_PORT: "abc" }, /^ {2}- GATEHOUSE_PORT must be a whole number from 0 to 65535 \(got "abc"\)$/],
      [
        { GATEHOUSE_HOST: "0.0.0.0" },
        /^ {2}- GATEHOUSE_HOST is 0\.0\.0\.0, which is not loopback, and there is no TLS: .*GATEHOUSE_TRUSTED_PROXIES$/,
      ],
      [
        { GATEHOUSE_TLS_CERT_FILE: certOnly },
        /^ {2}- GATEHOUSE_TLS_CERT_FILE and GATEHOUSE_TLS_KEY_FILE must be set together$/,
      ],
    ];
    const general: Array<[Record<string, string>, RegExp]> = [
      [{ GATEHOUSE_ISSUER: "not a url" }, /^ {2}- GATEHOUSE_ISSUER must be a URL \(got "not a url"\)$/],
    ];
    const cases = [
      ...listening.map(([mistake, message]) => ({ mistake, message, commands: [["serve"]] })),
      ...general.map(([mistake, message]) => ({ mistake, message, commands: [["serve"], ["init"], ["keys", "list"]] })),
    ];
    const runs = await Promise.all(
      cases.map(({ mistake, commands }) =>
        Promise.all(commands.map((command) => cli(command, { ...env, ...mistake }))),
      ),
    );
    for (const [i, { mistake, message, commands }] of cases.entries()) {
      for (const [j, command] of commands.entries()) {
        const r = runs[i]?.[j] as Run;
        const label = `${command.join(" ")} with ${JSON.stringify(mistake)}`;
        assert.equal(r.code, 1, label);
        assert.equal(r.stdout, "", label);
        const lines = r.stderr.trim().split("\n");
        assert.deepEqual(lines.slice(0, 1), ["Invalid configuration:"], label);
        assert.equal(lines.length, 2, `one message: ${r.stderr}`);
        assert.match(lines[1] as string, message, label);
      }
    }
    const two = await cli(["serve"], { ...env, GATEHOUSE_PORT: "abc", GATEHOUSE_HOST: "0.0.0.0" });
    assert.equal(two.code, 1);
    assert.equal(two.stderr.trim().split("\n").length, 3, "two mistakes, two messages");
    // A key listing or an offline scan run with the server's environment does not fail
    // over where the server would listen (a scan's exit 1 means a leak).
    const serverEnv = { ...env, ...Object.assign({}, ...listening.map(([mistake]) => mistake)) };
    const listed = await cli(["keys", "list", "--json"], serverEnv);
    assert.equal(listed.code, 0, listed.stderr);
    const scanned = await cli(["keys", "scan", "--offline", certOnly], serverEnv);
    assert.equal(scanned.code, 0, scanned.stderr);
  });

  test("serve over TLS answers https with Strict-Transport-Security", async () => {
    const dir = tempDir("gatehouse-tls-");
    try {
      const certFile = join(dir, "cert.pem");
      const keyFile = join(dir, "key.pem");
      execFileSync(
        "openssl",
        [
          "req",
          "-x509",
          "-newkey",
          "ec",
          "-pkeyopt",
          "ec_paramgen_curve:P-256",
          "-nodes",
          "-subj",
          "/CN=localhost",
          "-addext",
          "subjectAltName=DNS:localhost,IP:127.0.0.1",
          "-days",
          "1",
          "-keyout",
          keyFile,
          "-out",
          certFile,
        ],
        { stdio: "ignore" },
      );
      const server = await serve({ ...env, GATEHOUSE_TLS_CERT_FILE: certFile, GATEHOUSE_TLS_KEY_FILE: keyFile });
      try {
        assert.match(server.url, /^https:\/\//);
        const answer = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>(
          (resolve, reject) => {
            const req = httpsRequest(
              `${server.url}/v1/keys`,
              { ca: readFileSync(certFile), headers: { authorization: `Bearer ${adminKey}` } },
              (res) => {
                let body = "";
                res.on("data", (chunk) => {
                  body += chunk;
                });
                res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
              },
            );
            req.on("error", reject);
            req.end();
          },
        );
        assert.equal(answer.status, 200, answer.body);
        assert.equal(answer.headers["strict-transport-security"], "max-age=63072000; includeSubDomains");
        // Plain HTTP to the TLS port gets no answer in the clear.
        await assert.rejects(fetch(server.url.replace("https:", "http:")));
      } finally {
        assert.equal(await server.stop(), 0);
      }
      // Unusable certificate files are a clear error, not a stack trace.
      writeFileSync(certFile, "not a certificate\n");
      const broken = await cli(["serve"], {
        ...env,
        GATEHOUSE_PORT: "0",
        GATEHOUSE_TLS_CERT_FILE: certFile,
        GATEHOUSE_TLS_KEY_FILE: keyFile,
      });
      assert.equal(broken.code, 1);
      assert.match(broken.stderr, /TLS/);
      assert.doesNotMatch(broken.stderr, NO_STACK);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("SIGTERM: serve exits 0 and flushes usage, which is there after a restart; logs hold no key", async () => {
    const { id, key } = JSON.parse((await cli(["keys", "create", "--name", "counted", "--json"], env)).stdout);
    // Usage is flushed every minute here, so only the shutdown flush can write this count.
    const slow = { ...env, GATEHOUSE_USAGE_FLUSH_MS: "60000" };
    const first = await serve(slow);
    const verified = await call(`${first.url}/v1/keys/verify`, adminKey, "POST", { key });
    assert.equal(verified.body.valid, true);
    assert.equal((await call(`${first.url}/v1/keys?key=${key}`, adminKey)).status, 400);
    assert.equal((await call(`${first.url}/v1/keys/${key}`, adminKey)).status, 400);
    assert.equal(await first.stop(), 0);
    assert.match(first.output(), /"msg":"stopped"/);

    const second = await serve(slow);
    try {
      const usage = await call(`${second.url}/v1/keys/${id}/usage?interval=day`, adminKey);
      assert.equal(usage.status, 200);
      const valid = usage.body.buckets.reduce(
        (n: number, b: { counts: { VALID?: number } }) => n + (b.counts.VALID ?? 0),
        0,
      );
      assert.equal(valid, 1);
      assert.ok(Date.parse(usage.body.lastUsedAt) > 0);
    } finally {
      assert.equal(await second.stop(), 0);
    }
    for (const output of [first.output(), second.output()]) {
      assert.match(output, /"msg":"incoming request"/);
      assert.ok(!output.includes(key), "the server log holds a key");
      assert.ok(!output.includes(adminKey), "the server log holds the admin key");
    }
  });
});
