import { createHook } from "node:async_hooks";

/** Node's own tick objects, held for the life of the process (see keepTickObjectShape). */
const kept: object[] = [];

/**
 * Keeps two of Node's internal `process.nextTick` objects alive for good, so V8 never
 * drops their shape (hidden class).
 *
 * Why: every HTTP answer schedules several ticks (after the socket write, when the
 * request stream ends), and Node builds each tick as an object literal with computed
 * symbol keys. V8 optimizes that literal only while the shape it was built with lives on;
 * when a major GC finds no tick object alive at that moment, the shape is collected, the
 * next tick makes a new one, and the optimized `nextTick` ends up calling into V8's
 * runtime for every tick (`Runtime_DefineKeyedOwnPropertyInLiteral`, map migrations).
 * Measured on `POST /v1/keys/verify` (docs/benchmarks.md, "Eighth session"): 6 of 16
 * server processes fell into that path natively (5 of 6 under callgrind), where it was
 * ~11% of all instructions; with the shape held alive, none of 9 did. It depends on GC
 * timing, which is one reason otherwise equal runs of the same server differed.
 *
 * How: an async hook sees the tick objects made while it is enabled; it is enabled for two
 * ticks at start and disabled at once, so no hook runs while serving.
 * Returns how many tick objects are held (0 if Node no longer reports them this way).
 */
export function keepTickObjectShape(): number {
  if (kept.length > 0) return kept.length;
  const hook = createHook({
    init(_asyncId, type, _triggerAsyncId, resource) {
      if (type === "TickObject" && kept.length < 2) kept.push(resource);
    },
  });
  hook.enable();
  // Node's streams schedule ticks both without arguments and with them.
  process.nextTick(() => {});
  process.nextTick((_: unknown) => {}, null);
  hook.disable();
  return kept.length;
}
