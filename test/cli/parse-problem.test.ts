import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";
import { main } from "../../src/cli/main.ts";
import { parseProblem } from "../../src/cli/parse-problem.ts";

const OPTIONS: ParseArgsOptionsConfig = {
  offline: { type: "boolean" },
  name: { type: "string", short: "n" },
  help: { type: "boolean", short: "h" },
};

/** What parseProblem says about `args`, which strict parseArgs must refuse. */
function problemOf(args: string[]): string | null {
  try {
    parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (error) {
    return parseProblem(error, args, OPTIONS);
  }
  assert.fail(`parseArgs accepted ${args.join(" ")}`);
}

describe("parseProblem: a refused command line in our words", () => {
  test("names the unknown option, long or short, and nothing of Node's advice", () => {
    assert.equal(problemOf(["--ofline", "x"]), "unknown option --ofline; did you mean --offline?");
    assert.equal(problemOf(["--ofline=yes"]), "unknown option --ofline; did you mean --offline?");
    assert.equal(problemOf(["--verbose"]), "unknown option --verbose", "nothing close: no guess");
    assert.equal(problemOf(["-x"]), "unknown option -x");
    assert.equal(problemOf(["-hx"]), "unknown option -x");
    // Not Object.prototype.constructor.
    assert.equal(problemOf(["--constructor"]), "unknown option --constructor");
  });

  test("a missing value, a value given to a flag, and a value that looks like an option", () => {
    assert.equal(problemOf(["--name"]), "--name needs a value");
    assert.equal(problemOf(["x", "-n"]), "-n needs a value");
    assert.equal(problemOf(["--offline=yes"]), "--offline takes no value");
    assert.equal(
      problemOf(["--name", "--offline"]),
      "--name needs a value (got --offline, which looks like an option; write --name=--offline if that is the value)",
    );
  });

  test("a value that looks like an option and that the option would refuse: what the option takes, no advice to write it inline", () => {
    const options: ParseArgsOptionsConfig = { grace: { type: "string" }, reason: { type: "string" } };
    const checks = { grace: (value: string) => (/^\d+$/.test(value) ? null : "takes a whole number of 0 or more") };
    const problem = (args: string[]) => {
      try {
        parseArgs({ args, options, allowPositionals: true, strict: true });
      } catch (error) {
        return parseProblem(error, args, options, checks);
      }
      assert.fail(`parseArgs accepted ${args.join(" ")}`);
    };
    assert.equal(problem(["--grace", "-5"]), "--grace takes a whole number of 0 or more (got -5)");
    // No check, or a value the check allows: the inline form is still the advice.
    assert.equal(
      problem(["--reason", "-5"]),
      "--reason needs a value (got -5, which looks like an option; write --reason=-5 if that is the value)",
    );
  });

  test("an error that is not parseArgs' is not described", () => {
    assert.equal(parseProblem(new Error("boom"), [], OPTIONS), null);
    assert.equal(parseProblem(Object.assign(new Error("x"), { code: "ENOENT" }), [], OPTIONS), null);
    assert.equal(parseProblem(null, [], OPTIONS), null);
  });
});

describe("every command reports a mistyped flag in one line of its own, exit 2", () => {
  const commands = [
    ["serve"],
    ["init"],
    ["keys", "create"],
    ["keys", "list"],
    ["keys", "revoke"],
    ["keys", "rotate"],
    ["keys", "scan"],
    ["keys", "rotate-signing"],
    ["keys", "reset-signing"],
  ];
  for (const words of commands) {
    const name = words.join(" ");
    test(name, async () => {
      const out: string[] = [];
      const err: string[] = [];
      // No GATEHOUSE_* settings: the refusal comes before any configuration or store is read.
      const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: {} };
      assert.equal(await main([...words, "--ofline", "x"], io), 2);
      // Only keys scan has an --offline to suggest.
      const meant = name === "keys scan" ? "; did you mean --offline?" : "";
      assert.deepEqual(err, [`gatehouse ${name}: unknown option --ofline${meant} (see gatehouse ${name} --help)`]);
      assert.deepEqual(out, []);
    });
  }

  test("keys scan: a value given to a flag that takes none", async () => {
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t), env: {} };
    assert.equal(await main(["keys", "scan", "--offline=yes", "."], io), 2);
    assert.deepEqual(err, ["gatehouse keys scan: --offline takes no value (see gatehouse keys scan --help)"]);
  });

  test("keys rotate --grace -5 says what --grace takes, not to write --grace=-5 (which it refuses too)", async () => {
    for (const args of [
      ["keys", "rotate", "key_x", "--grace", "-5"],
      ["keys", "rotate", "key_x", "--grace=-5"],
    ]) {
      const err: string[] = [];
      const io = { out: () => {}, err: (t: string) => err.push(t), env: {} };
      assert.equal(await main(args, io), 2, args.join(" "));
      assert.match(err[0] ?? "", /^gatehouse keys rotate: --grace takes a whole number/, args.join(" "));
      assert.doesNotMatch(err.join("\n"), /write --grace=/);
    }
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t), env: {} };
    assert.equal(await main(["keys", "create", "--name", "x", "--expires-in", "-60"], io), 2);
    assert.deepEqual(err, [
      "gatehouse keys create: --expires-in takes a whole number of 0 or more (got -60) (see gatehouse keys create --help)",
    ]);
  });

  test("keys create: a flag whose value was forgotten", async () => {
    const err: string[] = [];
    const io = { out: () => {}, err: (t: string) => err.push(t), env: {} };
    assert.equal(await main(["keys", "create", "--name"], io), 2);
    assert.deepEqual(err, ["gatehouse keys create: --name needs a value (see gatehouse keys create --help)"]);
  });
});

describe("gatehouse --version", () => {
  test("--version and -v print the package's version alone, exit 0", async () => {
    const { version } = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8"));
    for (const flag of ["--version", "-v"]) {
      const out: string[] = [];
      const err: string[] = [];
      const io = { out: (t: string) => out.push(t), err: (t: string) => err.push(t), env: {} };
      assert.equal(await main([flag], io), 0, flag);
      assert.deepEqual(out, [version]);
      assert.deepEqual(err, []);
    }
  });
});
