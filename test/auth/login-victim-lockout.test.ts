import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type Backend, backends } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { auditEvents, createUser, login, startAuthServer, uniqueEmail } from "./support.ts";

/**
 * Regression: an attacker failing sign-ins for someone else's account every few minutes
 * kept that account closed to its owner too, on every route that checks a password. Now
 * the account's brake refuses only addresses the account was never signed in from, and a
 * refused attempt costs the address that made it. Gatehouse sits behind a "proxy" on
 * loopback here, so X-Forwarded-For names each client.
 */
const ATTACKER = "10.1.1.1";
const OWNER = "10.2.2.2";
const STRANGER = "10.3.3.3";

const from = (ip: string) => ({ key: null, headers: { "x-forwarded-for": ip } });

/**
 * Fails the account from `count` other addresses, as a distributed attacker would. Over
 * HTTP each address after the first block would itself be refused, and the account's wait
 * would stay at 1 s; counting through the server's own throttle builds a wait (minutes)
 * that no test step can outlast.
 */
async function failFromManyAddresses(server: TestServer, account: string, count: number) {
  for (let i = 0; i < count; i++) await server.gatehouse.loginThrottle.failure({ account, ip: `10.9.0.${i}` });
}

/**
 * A server behind a trusted proxy (so X-Forwarded-For names the client), with 3 free
 * failures per account and `freePerIp` per address.
 */
function startBrakedServer(backend: Backend, freePerIp: number): Promise<TestServer> {
  return startAuthServer(backend, {
    env: {
      GATEHOUSE_TRUSTED_PROXIES: "127.0.0.1",
      GATEHOUSE_LOGIN_FREE_FAILURES_PER_ACCOUNT: "3",
      GATEHOUSE_LOGIN_FREE_FAILURES_PER_IP: String(freePerIp),
      GATEHOUSE_LOGIN_MAX_DELAY_SECONDS: "900",
    },
  });
}

for (const backend of backends()) {
  describe(`an attack on one account does not lock its owner out (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startBrakedServer(backend, 1000);
    });
    after(() => server.close());

    test("the reviewer's scenario: the attacker keeps failing, the owner signs in from a known address", async () => {
      const user = await createUser(server);
      await login(server, user, { "x-forwarded-for": OWNER });
      const wrong = { email: user.email, password: "not the password at all" };
      const attacker: number[] = [];
      for (let i = 0; i < 20; i++)
        attacker.push((await server.call("POST", "/auth/login", wrong, from(ATTACKER))).status);
      assert.deepEqual(attacker.slice(0, 4), [401, 401, 401, 401]);
      assert.ok(attacker.includes(429));
      const owner = await server.call(
        "POST",
        "/auth/login",
        { email: user.email, password: user.password },
        from(OWNER),
      );
      assert.equal(owner.status, 200);
      const session = await server.call(
        "POST",
        "/auth/session",
        { email: user.email, password: user.password },
        from(OWNER),
      );
      assert.equal(session.status, 204);
    });

    test("while the account is blocked, an address it was never signed in from is refused on every route", async () => {
      const user = await createUser(server);
      const tokens = await login(server, user, { "x-forwarded-for": OWNER });
      await failFromManyAddresses(server, user.email, 10);
      const right = { email: user.email, password: user.password };

      const refused = await server.call("POST", "/auth/login", right, from(STRANGER));
      assert.equal(refused.status, 429);
      assert.equal(refused.body.code, "RATE_LIMITED");
      assert.ok(Number(refused.headers.get("retry-after")) > 1);
      assert.equal((await server.call("POST", "/auth/session", right, from(STRANGER))).status, 429);
      const change = { currentPassword: user.password, newPassword: "a brand new passphrase" };
      const changeFrom = (ip: string) =>
        server.call("POST", "/auth/password", change, {
          key: tokens.access_token,
          headers: { "x-forwarded-for": ip },
        });
      assert.equal((await changeFrom(STRANGER)).status, 429);
      const throttled = await auditEvents(server, `action=user.password_change&outcome=failure&targetId=${user.id}`);
      assert.deepEqual(
        throttled.map((e) => e.detail?.reason),
        ["THROTTLED"],
      );

      // The owner's address is known: the account's block does not apply to it.
      assert.equal((await changeFrom(OWNER)).status, 204);
    });

    test("the block answers the same for an unknown account as for a real one (no existence oracle)", async () => {
      const user = await createUser(server);
      const ghost = uniqueEmail("ghost");
      await failFromManyAddresses(server, user.email, 10);
      await failFromManyAddresses(server, ghost, 10);
      const real = await server.call("POST", "/auth/login", { email: user.email, password: "guess" }, from(STRANGER));
      const none = await server.call("POST", "/auth/login", { email: ghost, password: "guess" }, from(STRANGER));
      assert.equal(real.status, 429);
      assert.deepEqual(
        { status: none.status, code: none.body.code, title: none.body.title, detail: none.body.detail },
        { status: real.status, code: real.body.code, title: real.body.title, detail: real.body.detail },
      );
    });
  });

  describe(`polling during a block is not free (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startBrakedServer(backend, 5);
    });
    after(() => server.close());

    test("429s during an account's block spend the polling address's budget, and each is audited", async () => {
      const victim = await createUser(server);
      await failFromManyAddresses(server, victim.email, 10);
      const poll = { email: victim.email, password: "still guessing" };
      for (let i = 0; i < 10; i++) {
        assert.equal((await server.call("POST", "/auth/login", poll, from(ATTACKER))).status, 429);
      }
      // Before, a 429 cost nothing and the attacker could go on to another account at once.
      const other = await createUser(server);
      const elsewhere = await server.call(
        "POST",
        "/auth/login",
        { email: other.email, password: other.password },
        from(ATTACKER),
      );
      assert.equal(elsewhere.status, 429);
      // Another address is not affected.
      const fine = await server.call(
        "POST",
        "/auth/login",
        { email: other.email, password: other.password },
        from(OWNER),
      );
      assert.equal(fine.status, 200);

      await server.gatehouse.audit.flush();
      const audit = await server.call("GET", "/v1/audit?action=auth.login&outcome=failure&limit=100");
      const throttled = (audit.body.data as Array<{ ip: string | null; detail: { reason?: string } | null }>).filter(
        (e) => e.ip === ATTACKER && e.detail?.reason === "THROTTLED",
      );
      assert.equal(throttled.length, 11);
      assert.ok(!JSON.stringify(audit.body).includes("still guessing"));
    });
  });
  describe(`an IPv6 sender is braked by its /64, not by each address in it (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      server = await startBrakedServer(backend, 4);
    });
    after(() => server.close());

    test("spraying accounts from a new address of one /64 each time meets the address brake", async () => {
      // One subscriber holds a whole /64: counted per full address, each of its 2^64
      // addresses had its own free failures, and the brake never started.
      const statuses: number[] = [];
      for (let i = 1; i <= 6; i++) {
        const sprayed = { email: uniqueEmail("spray6"), password: "Spring2026!" };
        statuses.push((await server.call("POST", "/auth/login", sprayed, from(`2001:db8:6:1::${i}`))).status);
      }
      assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
      // Another subscriber's /64 is not braked with it; neither is IPv4.
      const { email, password } = await createUser(server);
      assert.equal(
        (await server.call("POST", "/auth/login", { email, password }, from("2001:db8:6:2::1"))).status,
        200,
      );
      assert.equal((await server.call("POST", "/auth/login", { email, password }, from(OWNER))).status, 200);
    });

    test("an owner's address is known by its /64, so a new privacy address of it is not a stranger", async () => {
      const user = await createUser(server);
      await login(server, user, { "x-forwarded-for": "2001:db8:7:1::aaaa" });
      await failFromManyAddresses(server, user.email, 10);
      const right = { email: user.email, password: user.password };
      assert.equal((await server.call("POST", "/auth/login", right, from("2001:db8:7:2::1"))).status, 429);
      assert.equal((await server.call("POST", "/auth/login", right, from("2001:db8:7:1::bbbb"))).status, 200);
    });
  });
}
