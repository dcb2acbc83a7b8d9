import assert from "node:assert/strict";
import { test } from "node:test";
import { newEmail, normaliseEmail } from "../../src/users/email.ts";

test("new addresses refuse invisible characters; lookups still find accounts registered with them", () => {
  for (const lookalike of [
    "a@example.com\u200b",
    "a\u200d@example.com",
    "a@\u202eexample.com",
    "a\ue000@example.com",
  ]) {
    assert.equal(newEmail(lookalike), null, JSON.stringify(lookalike));
    // Registered before the rule: its owner must still be able to sign in.
    assert.equal(
      normaliseEmail(lookalike),
      lookalike.normalize("NFKC").trim().toLowerCase(),
      JSON.stringify(lookalike),
    );
  }
  assert.equal(newEmail("a\ud800@example.com"), null);
  assert.equal(newEmail("  Ａlice@Example.COM "), "alice@example.com", "NFKC, trimmed, lower-cased");
  assert.equal(normaliseEmail("a b@example.com"), null);
  assert.equal(normaliseEmail("a@example"), null);
});

test("new addresses refuse empty domain labels: a@example.com. is the mailbox of a@example.com", () => {
  for (const lookalike of ["ada@example.com.", "ada@example..com", "ada@.example.com", "ada@example.com.."]) {
    assert.equal(newEmail(lookalike), null, JSON.stringify(lookalike));
    // Registered before the rule: still found.
    assert.equal(normaliseEmail(lookalike), lookalike, JSON.stringify(lookalike));
  }
  assert.equal(newEmail("ada@mail.example.co.uk"), "ada@mail.example.co.uk");
  assert.equal(newEmail("a.d.a@example.com"), "a.d.a@example.com");
});
