import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { BusyError } from "../../src/errors/gatehouse-error.ts";
import { PasswordHasher, threadPoolSize } from "../../src/users/password-hasher.ts";

/** Cheap parameters: these tests are about scheduling, not strength. */
const PARAMETERS = { memoryKiB: 1024, timeCost: 1, parallelism: 1 };

describe("PasswordHasher: at most maxConcurrent hashes at once, so a pool thread stays free", () => {
  test("the default leaves one of libuv's threads free: UV_THREADPOOL_SIZE − 1, else 3", () => {
    assert.equal(threadPoolSize({}), 4);
    assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: "8" }), 8);
    assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: "junk" }), 4);
    assert.equal(threadPoolSize({ UV_THREADPOOL_SIZE: "0" }), 4);
    assert.throws(() => new PasswordHasher(PARAMETERS, { maxConcurrent: 0 }), TypeError);
  });

  test("hashes beyond the cap wait in line, start as others finish, and all give the right answer", async () => {
    const hasher = new PasswordHasher(PARAMETERS, { maxConcurrent: 2 });
    const stored = await hasher.hash("correct horse battery staple");
    assert.deepEqual(hasher.load, { running: 0, waiting: 0 });
    const checks = [
      hasher.verify(stored, "correct horse battery staple"),
      hasher.verify(stored, "wrong"),
      hasher.verify(stored, "correct horse battery staple"),
      hasher.verify(stored, "wrong again"),
      hasher.hash("another password"),
    ];
    assert.deepEqual(hasher.load, { running: 2, waiting: 3 });
    const [a, b, c, d, e] = await Promise.all(checks);
    assert.deepEqual(
      [a, b, c, d],
      [
        { ok: true, rehash: false },
        { ok: false, rehash: false },
        { ok: true, rehash: false },
        { ok: false, rehash: false },
      ],
    );
    assert.match(String(e), /^\$argon2id\$/);
    assert.deepEqual(hasher.load, { running: 0, waiting: 0 });
  });

  test("a failing hash frees its slot (a malformed stored hash is a refusal, not a stuck queue)", async () => {
    const hasher = new PasswordHasher(PARAMETERS, { maxConcurrent: 1 });
    const results = await Promise.all([
      hasher.verify("not an argon2 hash", "x"),
      hasher.verify("$argon2id$v=19$m=1024,t=1,p=1$bad$bad", "x"),
      hasher.burn("x"),
    ]);
    assert.deepEqual(results.slice(0, 2), [
      { ok: false, rehash: false },
      { ok: false, rehash: false },
    ]);
    assert.deepEqual(hasher.load, { running: 0, waiting: 0 });
  });

  test("a check against a hash with other parameters runs a check under today's beside it, so it answers no sooner than an unknown account's", async () => {
    const weak = new PasswordHasher({ memoryKiB: 1024, timeCost: 1, parallelism: 1 });
    const today = new PasswordHasher({ memoryKiB: 2048, timeCost: 2, parallelism: 1 });
    await today.warm();
    const stored = await weak.hash("correct horse battery staple");
    const current = await today.hash("correct horse battery staple");
    assert.equal(today.dummyCheckCount, 0);
    assert.deepEqual(await today.verify(stored, "wrong"), { ok: false, rehash: false });
    assert.equal(today.dummyCheckCount, 1);
    assert.deepEqual(await today.verify(stored, "correct horse battery staple"), { ok: true, rehash: true });
    assert.equal(today.dummyCheckCount, 2);
    assert.deepEqual(await today.verify(current, "wrong"), { ok: false, rehash: false });
    assert.equal(today.dummyCheckCount, 2, "a hash with today's parameters needs no company");
    await today.burn("unknown account");
    assert.equal(today.dummyCheckCount, 3);
    assert.deepEqual(today.load, { running: 0, waiting: 0 });
  });

  test("at most maxWaiting wait: past that a check is refused at once with BusyError, and the rest still finish", async () => {
    assert.throws(() => new PasswordHasher(PARAMETERS, { maxWaiting: -1 }), TypeError);
    const hasher = new PasswordHasher(PARAMETERS, { maxConcurrent: 1, maxWaiting: 3 });
    await hasher.warm();
    const stored = await hasher.hash("correct horse battery staple");
    const started = [
      hasher.verify(stored, "correct horse battery staple"),
      hasher.verify(stored, "wrong"),
      hasher.verify(stored, "wrong again"),
    ];
    assert.deepEqual(hasher.load, { running: 1, waiting: 2 });
    // Refused, not swallowed as a wrong password: a full queue is not a failed check.
    await assert.rejects(hasher.verify(stored, "correct horse battery staple"), (error: unknown) => {
      assert.ok(error instanceof BusyError);
      assert.equal(error.status, 503);
      assert.equal(error.headers?.["retry-after"], "1");
      return true;
    });
    await assert.rejects(hasher.burn("another unknown account"), BusyError);
    // A password being set needs one place: it takes the last, and then none is left.
    const set = hasher.hash("a new password");
    await assert.rejects(hasher.hash("another new password"), BusyError);
    await set;
    const [a, b] = await Promise.all(started);
    assert.deepEqual(
      [a, b],
      [
        { ok: true, rehash: false },
        { ok: false, rehash: false },
      ],
    );
    assert.deepEqual(hasher.load, { running: 0, waiting: 0 });
  });

  test("a sign-in check needs room for two hashes, known account or not, so a nearly full queue tells nothing", async () => {
    const hasher = new PasswordHasher(PARAMETERS, { maxConcurrent: 1, maxWaiting: 2 });
    await hasher.warm();
    const stored = await hasher.hash("correct horse battery staple");
    const started = [hasher.verify(stored, "wrong"), hasher.verify(stored, "wrong again")];
    assert.deepEqual(hasher.load, { running: 1, waiting: 1 });
    // Room for one more hash only: an unknown account's check (one hash) is refused like a
    // known one's, which may need two.
    await assert.rejects(hasher.burn("unknown account"), BusyError);
    await assert.rejects(hasher.verify(stored, "correct horse battery staple"), BusyError);
    // A password being set is not a sign-in check: it takes the last place.
    await hasher.hash("a new password");
    await Promise.all(started);
  });
});
