import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { editDistance, nearestSetting } from "../../src/config/nearest-setting.ts";

describe("nearestSetting", () => {
  const known = ["GATEHOUSE_PORT", "GATEHOUSE_HOST", "GATEHOUSE_MASTER_KEY", "GATEHOUSE_MASTER_KEY_FILE"];

  test("edit distance counts insertions, deletions and substitutions", () => {
    assert.equal(editDistance("kitten", "sitting"), 3);
    assert.equal(editDistance("", "abc"), 3);
    assert.equal(editDistance("abc", ""), 3);
    assert.equal(editDistance("same", "same"), 0);
    assert.equal(editDistance("PROT", "PORT"), 2);
  });

  test("a name at most two edits away is suggested, the closest first", () => {
    assert.equal(nearestSetting("GATEHOUSE_PROT", known), "GATEHOUSE_PORT");
    assert.equal(nearestSetting("GATEHOUSE_MASTERKEY", known), "GATEHOUSE_MASTER_KEY");
    assert.equal(nearestSetting("GATEHOUSE_MASTER_KEY_FIL", known), "GATEHOUSE_MASTER_KEY_FILE");
  });

  test("the same letters in another order count as close", () => {
    assert.equal(nearestSetting("GATEHOUSE_TROP", known), "GATEHOUSE_PORT");
  });

  test("equally close names are broken by name, so the guess is stable", () => {
    // GATEHOUSE_HORT is one substitution from both HOST and PORT.
    assert.equal(nearestSetting("GATEHOUSE_HORT", known), "GATEHOUSE_HOST");
    assert.equal(nearestSetting("GATEHOUSE_HORT", [...known].reverse()), "GATEHOUSE_HOST");
  });

  test("nothing is suggested when no name is close", () => {
    assert.equal(nearestSetting("GATEHOUSE_COLOUR", known), null);
    assert.equal(nearestSetting("GATEHOUSE_PORT_NUMBER", known), null);
    assert.equal(nearestSetting("GATEHOUSE_X", []), null);
  });
});
