import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { backends, tempDir } from "../support/backends.ts";
import { createTestDatabase, runCli, startNode } from "../support/processes.ts";

const withPostgres = backends().some((backend) => backend.name === "postgres");
const STACK = /\n\s+at |node:internal|\.ts:\d+:\d+/;

/** Runs `serve` expecting it to refuse to start; resolves with what it printed. */
async function refusedStart(env: Record<string, string>): Promise<string> {
  const error = await startNode(env).then(
    async (node) => {
      await node.stop();
      assert.fail(`serve started:\n${node.logs()}`);
    },
    (failure: unknown) => failure,
  );
  assert.ok(error instanceof Error);
  assert.match(error.message, /exited \(1\) before listening/);
  return error.message;
}

/** The node's JSON log lines, once its log says `text` (or after 5 s). */
async function logLinesOnceSaid(
  node: { logs(): string },
  text: string,
): Promise<Array<{ level: number; msg: string; redisAnswering?: boolean; dataDir?: string; storage?: string }>> {
  for (let i = 0; i < 200 && !node.logs().includes(text); i++) await sleep(25);
  return node
    .logs()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line));
}

describe("serve's start-up messages", () => {
  const dirs: string[] = [];
  const dir = () => {
    const made = tempDir("gatehouse-start-");
    dirs.push(made);
    return made;
  };
  after(() => {
    for (const made of dirs) rmSync(made, { recursive: true, force: true });
  });

  // Regression: a deleted default master.key was silently replaced by a new one, which
  // then could not unseal the stored keys; the fresh file sat where the backup goes.
  test("a missing master.key with sealed signing keys in the store: said so, and no new key file made", async () => {
    const dataDir = dir();
    const env = { GATEHOUSE_DATA_DIR: dataDir };
    assert.equal((await runCli(["init", "--json"], env)).code, 0);
    assert.equal(
      (await runCli(["keys", "rotate-signing", "--force"], env)).code,
      0,
      "signing keys sealed under master.key",
    );
    const file = join(dataDir, "master.key");
    rmSync(file);
    const output = await refusedStart(env);
    assert.ok(output.includes(`the master key file ${file} is missing`), output);
    assert.match(output, /Restore the file from your backup/);
    assert.match(output, /gatehouse keys reset-signing --yes/);
    assert.equal(existsSync(file), false, "no new master key was created");
    // The CLI says the same, in one line, and creates nothing either.
    const rotate = await runCli(["keys", "rotate-signing"], env);
    assert.equal(rotate.code, 1);
    assert.match(rotate.stderr, /^gatehouse keys rotate-signing: the master key file .* is missing/);
    assert.doesNotMatch(rotate.stderr, STACK);
    assert.equal(existsSync(file), false);
    // Deliberately replacing the keys makes a new one, and serve starts again.
    assert.equal((await runCli(["keys", "reset-signing", "--yes"], env)).code, 0);
    assert.equal(existsSync(file), true);
    const node = await startNode(env);
    assert.equal(await node.stop(), 0);
  });

  test("GATEHOUSE_MASTER_KEY with junk around valid base64 is refused", async () => {
    const valid = randomBytes(32).toString("base64");
    const output = await refusedStart({ GATEHOUSE_DATA_DIR: dir(), GATEHOUSE_MASTER_KEY: `!!!!${valid}` });
    assert.match(output, /GATEHOUSE_MASTER_KEY must be base64 of exactly 32 random bytes and nothing else/);
  });

  test("a second serve on the same data directory is refused; once the first is killed, a new one starts", async () => {
    const env = { GATEHOUSE_DATA_DIR: dir() };
    const first = await startNode(env);
    try {
      // Each process counts rate limits and sign-in brakes alone: two would each allow
      // the whole limit, with nothing said.
      const output = await refusedStart(env);
      assert.ok(output.includes(`another gatehouse serve is running on ${env.GATEHOUSE_DATA_DIR}`), output);
      assert.doesNotMatch(output, STACK);
      // CLI commands still run beside the server.
      assert.equal((await runCli(["init", "--key-only"], env)).code, 0);
    } finally {
      first.child.kill("SIGKILL");
      await first.exited;
    }
    // The lock died with the process: no stale lock to remove by hand.
    const next = await startNode(env);
    assert.equal(await next.stop(), 0);
  });

  test("GATEHOUSE_DATA_DIR naming a file: said so, not EEXIST", async () => {
    const file = join(dir(), "not-a-folder");
    writeFileSync(file, "x\n");
    const output = await refusedStart({ GATEHOUSE_DATA_DIR: file });
    assert.ok(output.includes(`GATEHOUSE_DATA_DIR must be a folder, but ${file} is a file`), output);
    assert.doesNotMatch(output, /EEXIST/);
  });

  test("GATEHOUSE_MASTER_KEY_FILE naming a directory: said so, not its mode", async () => {
    const folder = join(dir(), "keys");
    mkdirSync(folder, { mode: 0o755 });
    const output = await refusedStart({ GATEHOUSE_DATA_DIR: dir(), GATEHOUSE_MASTER_KEY_FILE: folder });
    assert.ok(output.includes(`${folder} is a directory, not a master key file`), output);
    assert.doesNotMatch(output, /readable by others/);
  });

  // Regression: an unreachable Redis started without a word, and the log said "redis":true.
  test("an unreachable GATEHOUSE_REDIS_URL: a warning naming it without its password", async () => {
    const port = await freePort();
    const node = await startNode({
      GATEHOUSE_DATA_DIR: dir(),
      GATEHOUSE_REDIS_URL: `redis://gate:s3cret-pass@127.0.0.1:${port}/0`,
    });
    try {
      const lines = await logLinesOnceSaid(node, "Gatehouse is ready");
      const warning = lines.find((line) => line.level === 40 && line.msg.includes("Redis"));
      assert.ok(warning, node.logs());
      assert.match(
        warning.msg,
        new RegExp(
          `^Redis at redis://gate@127\\.0\\.0\\.1:${port}/0 did not answer within 2 s \\(GATEHOUSE_REDIS_URL\\)`,
        ),
      );
      assert.match(warning.msg, /rate limits are counted on each node alone/);
      assert.equal(lines.find((line) => line.msg === "Gatehouse is ready")?.redisAnswering, false);
      assert.ok(!node.logs().includes("s3cret-pass"), "the password is not logged");
    } finally {
      assert.equal(await node.stop(), 0);
    }
  });

  // Regression: a database not created yet gave the driver's stack trace; an unreachable
  // one said only "Storage is unavailable; retry shortly.", from a process that then exited.
  test("GATEHOUSE_DATABASE_URL that cannot be used: one line naming it and what to do, password hidden, no stack", {
    skip: !withPostgres,
  }, async () => {
    const PREFIX = "cannot use the PostgreSQL database of GATEHOUSE_DATABASE_URL (";
    const masterKey = randomBytes(32).toString("base64");
    const missing = `missing_${randomBytes(4).toString("hex")}`;
    const cases = [
      {
        url: `postgres://postgres:s3cret-pass@127.0.0.1:5432/${missing}`,
        says: `cannot use the PostgreSQL database of GATEHOUSE_DATABASE_URL (postgres://postgres:****@127.0.0.1:5432/${missing}): database "${missing}" does not exist; create it first`,
      },
      {
        url: `postgres://postgres@127.0.0.1:${await freePort()}/test`,
        says: "nothing answers at that host and port; is PostgreSQL running there?",
      },
    ];
    for (const { url, says } of cases) {
      const env = { GATEHOUSE_DATABASE_URL: url, GATEHOUSE_MASTER_KEY: masterKey, GATEHOUSE_DATA_DIR: dir() };
      const output = await refusedStart(env);
      assert.ok(output.includes(`gatehouse serve: ${PREFIX}`) && output.includes(says), output);
      assert.doesNotMatch(output, STACK);
      assert.ok(!output.includes("s3cret-pass"), "the password is not printed");
      const init = await runCli(["init", "--key-only"], env);
      assert.equal(init.code, 1);
      assert.ok(init.stderr.includes(`gatehouse init: ${PREFIX}`) && init.stderr.includes(says), init.stderr);
      assert.doesNotMatch(init.stderr, STACK);
      assert.equal(init.stdout, "");
    }
  });

  // Regression: only the password after the user name was hidden; the driver also takes
  // one as a query parameter (`?password=`, `?sslpassword=`), which was printed as given.
  test("GATEHOUSE_DATABASE_URL with the password as a query parameter: hidden as well", async () => {
    const env = {
      GATEHOUSE_DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/test?sslmode=disable&password=s3cret-query&sslpassword=k3y-pass`,
      GATEHOUSE_MASTER_KEY: randomBytes(32).toString("base64"),
      GATEHOUSE_DATA_DIR: dir(),
    };
    const init = await runCli(["init", "--key-only"], env);
    assert.equal(init.code, 1);
    assert.ok(init.stderr.includes("nothing answers at that host and port"), init.stderr);
    assert.ok(!init.stderr.includes("s3cret-query") && !init.stderr.includes("k3y-pass"), init.stderr);
    const output = await refusedStart(env);
    assert.ok(output.includes("cannot use the PostgreSQL database of GATEHOUSE_DATABASE_URL"), output);
    assert.ok(!output.includes("s3cret-query") && !output.includes("k3y-pass"), output);
  });

  // A new user ran `init` from another terminal without the PostgreSQL settings, as the
  // warning ("in the Gatehouse folder") suggested, and got a SQLite store's key.
  test("a new PostgreSQL store: the warning says init needs this node's settings, and the ready line names no data dir", {
    skip: !withPostgres,
  }, async () => {
    const database = await createTestDatabase();
    try {
      const node = await startNode({
        GATEHOUSE_DATABASE_URL: database.url,
        GATEHOUSE_MASTER_KEY: randomBytes(32).toString("base64"),
        GATEHOUSE_ISSUER: "http://127.0.0.1:8080",
      });
      try {
        const lines = await logLinesOnceSaid(node, "No admin key");
        const warning = lines.find((line) => line.msg.startsWith("No admin key exists yet"));
        assert.match(
          warning?.msg ?? node.logs(),
          /with this node's GATEHOUSE_DATABASE_URL and GATEHOUSE_MASTER_KEY set/,
        );
        const ready = lines.find((line) => line.msg === "Gatehouse is ready");
        assert.equal(ready?.storage, "postgres");
        assert.equal(ready?.dataDir, undefined);
      } finally {
        assert.equal(await node.stop(), 0);
      }
    } finally {
      await database.drop();
    }
  });

  // Regression: a URL naming its host as a parameter (how a Unix socket is given) has no
  // host for WHATWG's URL parser, and every CLI command died on it with a stack trace.
  test("GATEHOUSE_DATABASE_URL with the host as a parameter (a socket's form): init works and says which store", {
    skip: !withPostgres,
  }, async () => {
    const database = await createTestDatabase();
    try {
      const name = new URL(database.url).pathname;
      const env = {
        GATEHOUSE_DATABASE_URL: `postgres://postgres@${name}?host=127.0.0.1`,
        GATEHOUSE_MASTER_KEY: randomBytes(32).toString("base64"),
      };
      const init = await runCli(["init", "--key-only"], env);
      assert.equal(init.code, 0, init.stderr);
      assert.match(init.stdout, /^gate_[0-9A-Za-z]+\n$/);
      assert.equal(init.stderr, "Initialised PostgreSQL (GATEHOUSE_DATABASE_URL).\n");
    } finally {
      await database.drop();
    }
  });
});

/** A loopback port nothing listens on: one just freed. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
