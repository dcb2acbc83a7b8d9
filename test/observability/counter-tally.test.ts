import assert from "node:assert/strict";
import { test } from "node:test";
import { Counter, Registry } from "prom-client";
import { CounterTally } from "../../src/observability/counter-tally.ts";

function counterWithTally() {
  const registry = new Registry();
  const tally = new CounterTally<"outcome">();
  const counter: Counter<"outcome"> = new Counter({
    name: "t_total",
    help: "t",
    labelNames: ["outcome"],
    registers: [registry],
    collect: () => tally.drainInto(counter),
  });
  return { registry, tally };
}

test("a tally's counts reach the counter when scraped, each count once, across scrapes", async () => {
  const { registry, tally } = counterWithTally();
  const valid = tally.seriesFor("VALID", () => ({ outcome: "VALID" }));
  assert.equal(
    tally.seriesFor("VALID", () => assert.fail("label set built twice")),
    valid,
  );
  valid.pending += 3;
  tally.seriesFor("EXPIRED", () => ({ outcome: "EXPIRED" })).pending++;
  let text = await registry.metrics();
  assert.match(text, /^t_total\{outcome="VALID"\} 3$/m);
  assert.match(text, /^t_total\{outcome="EXPIRED"\} 1$/m);
  // A second scrape without new counts: the same totals, not doubled.
  text = await registry.metrics();
  assert.match(text, /^t_total\{outcome="VALID"\} 3$/m);
  valid.pending += 2;
  text = await registry.metrics();
  assert.match(text, /^t_total\{outcome="VALID"\} 5$/m);
  assert.match(text, /^t_total\{outcome="EXPIRED"\} 1$/m);
});

test("a series counted before its first scrape is absent until it has a count", async () => {
  const { registry, tally } = counterWithTally();
  tally.seriesFor("REVOKED", () => ({ outcome: "REVOKED" }));
  assert.doesNotMatch(await registry.metrics(), /REVOKED/);
});
