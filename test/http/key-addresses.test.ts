import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { AddressAllowlist, allowedAddressProblem } from "../../src/keys/address-allowlist.ts";
import { backends } from "../support/backends.ts";
import { startServer, type TestServer } from "../support/server.ts";

describe("address allowlists", () => {
  test("entries: addresses and CIDR ranges of both families; nothing else", () => {
    for (const good of ["10.0.0.0/8", "192.0.2.7", "0.0.0.0/0", "2001:db8::/32", "::1", "::ffff:10.0.0.0/104"]) {
      assert.equal(allowedAddressProblem(good), null, good);
    }
    for (const bad of [
      "10.0.0.0/33",
      "2001:db8::/129",
      "10.0.0.0/08",
      "10.0.0.0/",
      "10.0.0.0/-1",
      "10.0.0.256",
      "example.com",
      "fe80::1%eth0",
      "10.0.0.0/8/8",
      " 10.0.0.1",
      "10.0.0.0/8,192.0.2.0/24",
      "203.0.113.5/24",
      "2001:db8::1/32",
    ]) {
      assert.notEqual(allowedAddressProblem(bad), null, bad);
    }
    // The mistakes people make are named with their fix.
    assert.equal(allowedAddressProblem("203.0.113.5/24"), "has host bits set: the range is 203.0.113.0/24");
    assert.equal(allowedAddressProblem("2001:db8::1/32"), "has host bits set: the range is 2001:db8::/32");
    assert.match(allowedAddressProblem("10.0.0.0/8,192.0.2.0/24") ?? "", /one address or range per entry/);
  });

  // Regression: "::ffff:192.168.1.0/24" reads as an IPv4 /24, but is the IPv6 range ::/24,
  // which holds every IPv4-mapped address: accepted, the key was usable from any IPv4
  // address; refused later for its host bits, the answer offered ::/24, the same trap.
  test("an IPv4-mapped address with a prefix under 96 is refused: it would span all of IPv4", () => {
    for (const wide of ["::ffff:192.168.1.0/24", "::ffff:10.0.0.0/8", "0:0:0:0:0:ffff:a00:0/16", "::ffff:0:0/95"]) {
      assert.match(allowedAddressProblem(wide) ?? "", /IPv4/, wide);
    }
    assert.ok(new AddressAllowlist(["::ffff:192.168.1.0/24"]).allows("203.0.113.9"), "what it would have let in");
    for (const narrow of ["::ffff:192.168.1.0/120", "::ffff:0:0/96", "::ffff:10.1.2.3", "::/0", "2001:db8::/32"]) {
      assert.equal(allowedAddressProblem(narrow), null, narrow);
    }
  });

  test("matching: ranges, single addresses, IPv4-mapped IPv6; an unknown address never matches", () => {
    const list = new AddressAllowlist(["10.0.0.0/8", "192.0.2.7", "2001:db8::/32"]);
    for (const yes of ["10.255.1.2", "192.0.2.7", "::ffff:10.1.2.3", "2001:db8:1::9"]) assert.ok(list.allows(yes), yes);
    for (const no of ["11.0.0.1", "192.0.2.8", "2001:db9::1", "::1", "", "not an address", null, undefined]) {
      assert.ok(!list.allows(no), String(no));
    }
  });
});

for (const backend of backends()) {
  describe(`keys bound to addresses (${backend.name})`, () => {
    let server: TestServer;
    before(async () => {
      // Loopback is the proxy here, so a test can speak for any client address.
      server = await startServer(backend, { env: { GATEHOUSE_TRUSTED_PROXIES: "127.0.0.1" } });
    });
    after(() => server.close());

    const verify = (body: Record<string, unknown>) => server.call("POST", "/v1/keys/verify", body);
    const totals = async (id: string) => {
      const usage = await server.call("GET", `/v1/keys/${id}/usage?interval=day`);
      const counts: Record<string, number> = {};
      for (const bucket of usage.body.buckets)
        for (const [k, v] of Object.entries(bucket.counts)) counts[k] = (counts[k] ?? 0) + (v as number);
      return counts;
    };

    test("verify: valid from an allowed address; ADDRESS_NOT_ALLOWED from another or none, without spending the limit", async () => {
      const created = await server.call("POST", "/v1/keys", {
        name: "egress-bound",
        scopes: ["payments:read"],
        rateLimit: { limit: 5, windowSeconds: 3600 },
        allowedAddresses: ["203.0.113.0/24", "2001:db8::/48"],
      });
      assert.equal(created.status, 201);
      assert.deepEqual(created.body.allowedAddresses, ["203.0.113.0/24", "2001:db8::/48"]);
      const { key, id } = created.body;

      const ok = await verify({ key, scopes: ["payments:read"], address: "203.0.113.9" });
      assert.equal(ok.body.valid, true);
      assert.equal(ok.body.ratelimit.remaining, 4);
      assert.equal((await verify({ key, address: "2001:db8:0:1::5" })).body.valid, true);
      assert.equal((await verify({ key, address: "::ffff:203.0.113.200" })).body.valid, true);

      for (const elsewhere of [{ address: "198.51.100.1" }, { address: "2001:db9::1" }, {}]) {
        const refused = await verify({ key, scopes: ["payments:read"], ...elsewhere });
        assert.equal(refused.status, 200);
        assert.deepEqual(refused.body, { valid: false, code: "ADDRESS_NOT_ALLOWED" }, JSON.stringify(elsewhere));
      }
      // Three refusals spent nothing: the next valid answer has 1 left of 5, after 3 valid ones.
      const last = await verify({ key, address: "203.0.113.10" });
      assert.equal(last.body.ratelimit.remaining, 1);

      assert.deepEqual(await totals(id), { VALID: 4, ADDRESS_NOT_ALLOWED: 3 });
      const audit = await server.call("GET", `/v1/audit?action=key.verify&outcome=failure&targetId=${id}&limit=10`);
      const addresses = audit.body.data.map((e: { detail: { code: string; address: string | null } }) => {
        assert.equal(e.detail.code, "ADDRESS_NOT_ALLOWED");
        return e.detail.address;
      });
      assert.deepEqual(addresses.sort(), ["198.51.100.1", "2001:db9::1", null].sort());
    });

    test("a key bound to no addresses ignores `address`; a malformed address is a 400 naming it", async () => {
      const { body } = await server.call("POST", "/v1/keys", { name: "anywhere", scopes: [] });
      assert.equal(body.allowedAddresses, null);
      assert.equal((await verify({ key: body.key, address: "198.51.100.1" })).body.valid, true);
      assert.equal((await verify({ key: body.key })).body.valid, true);
      const bad = await verify({ key: body.key, address: "localhost" });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, "VALIDATION_FAILED");
      assert.equal(bad.body.errors[0].path, "/address");
    });

    test("create and PATCH refuse bad entries with their paths; an empty list is refused, null clears", async () => {
      const bad = await server.call("POST", "/v1/keys", {
        name: "bad",
        scopes: [],
        allowedAddresses: ["10.0.0.0/8", "10.0.0.0/33", "intranet"],
      });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, "VALIDATION_FAILED");
      assert.deepEqual(
        bad.body.errors.map((e: { path: string }) => e.path),
        ["/allowedAddresses/1", "/allowedAddresses/2"],
      );
      const empty = await server.call("POST", "/v1/keys", { name: "empty", scopes: [], allowedAddresses: [] });
      assert.equal(empty.status, 400);
      const tooMany = Array.from({ length: 65 }, (_, i) => `10.0.${i}.0/24`);
      assert.equal(
        (await server.call("POST", "/v1/keys", { name: "many", scopes: [], allowedAddresses: tooMany })).status,
        400,
      );

      const { body } = await server.call("POST", "/v1/keys", { name: "moving", scopes: [] });
      const bind = await server.call("PATCH", `/v1/keys/${body.id}`, { allowedAddresses: ["192.0.2.0/24"] });
      assert.equal(bind.status, 200);
      assert.deepEqual(bind.body.allowedAddresses, ["192.0.2.0/24"]);
      // Takes effect on the next verification.
      assert.equal((await verify({ key: body.key, address: "198.51.100.1" })).body.code, "ADDRESS_NOT_ALLOWED");
      assert.equal((await verify({ key: body.key, address: "192.0.2.1" })).body.valid, true);
      const badPatch = await server.call("PATCH", `/v1/keys/${body.id}`, { allowedAddresses: ["::1/200"] });
      assert.equal(badPatch.status, 400);
      assert.equal(badPatch.body.errors[0].path, "/allowedAddresses/0");
      const cleared = await server.call("PATCH", `/v1/keys/${body.id}`, { allowedAddresses: null });
      assert.equal(cleared.body.allowedAddresses, null);
      assert.equal((await verify({ key: body.key, address: "198.51.100.1" })).body.valid, true);

      const audit = await server.call("GET", `/v1/audit?action=key.update&targetId=${body.id}&limit=10`);
      assert.deepEqual(
        audit.body.data.map((e: { detail: { allowedAddresses?: unknown } }) => e.detail.allowedAddresses).reverse(),
        [
          { before: null, after: ["192.0.2.0/24"] },
          { before: ["192.0.2.0/24"], after: null },
        ],
      );
    });

    test("rotation carries the allowlist to the new key", async () => {
      const { body } = await server.call("POST", "/v1/keys", {
        name: "rotating",
        scopes: [],
        allowedAddresses: ["198.51.100.0/24"],
      });
      const rotated = await server.call("POST", `/v1/keys/${body.id}/rotate`, { gracePeriodSeconds: 60 });
      assert.equal(rotated.status, 201);
      assert.deepEqual(rotated.body.allowedAddresses, ["198.51.100.0/24"]);
      assert.equal((await verify({ key: rotated.body.key, address: "203.0.113.1" })).body.code, "ADDRESS_NOT_ALLOWED");
      assert.equal((await verify({ key: rotated.body.key, address: "198.51.100.77" })).body.valid, true);
    });

    test("a caller key bound to addresses: admitted from them, 403 ADDRESS_NOT_ALLOWED elsewhere, audited, no brake", async () => {
      const service = await server.call("POST", "/v1/keys", {
        name: "bound service",
        scopes: [],
        permissions: ["keys:verify", "keys:read"],
        allowedAddresses: ["192.0.2.0/24"],
      });
      const customer = await server.call("POST", "/v1/keys", { name: "customer", scopes: [] });
      const from = (address: string) => ({ key: service.body.key, headers: { "x-forwarded-for": address } });

      const inside = await server.call("POST", "/v1/keys/verify", { key: customer.body.key }, from("192.0.2.10"));
      assert.equal(inside.status, 200);
      assert.equal(inside.body.valid, true);
      // Twice: the second goes the fast way (a caller already admitted), which must check too.
      for (let i = 0; i < 2; i++) {
        const outside = await server.call("POST", "/v1/keys/verify", { key: customer.body.key }, from("198.51.100.3"));
        assert.equal(outside.status, 403);
        assert.equal(outside.headers.get("content-type"), "application/problem+json; charset=utf-8");
        assert.equal(outside.body.code, "ADDRESS_NOT_ALLOWED");
        assert.match(outside.body.detail, /198\.51\.100\.3/);
      }
      // Many refusals from one address are no guesses: the address is not braked.
      for (let i = 0; i < 35; i++) {
        await server.call("GET", `/v1/keys/${customer.body.id}`, undefined, from("198.51.100.4"));
      }
      const unbraked = await server.call("GET", `/v1/keys/${customer.body.id}`, undefined, {
        headers: { "x-forwarded-for": "198.51.100.4" },
      });
      assert.equal(unbraked.status, 200);
      assert.equal(
        (await server.call("GET", `/v1/keys/${customer.body.id}`, undefined, from("192.0.2.99"))).status,
        200,
      );

      const audit = await server.call(
        "GET",
        `/v1/audit?action=auth.api_key&outcome=failure&actor=key:${service.body.id}&limit=100`,
      );
      assert.equal(audit.body.data.length, 37);
      for (const event of audit.body.data) {
        assert.equal(event.detail.code, "ADDRESS_NOT_ALLOWED");
        assert.equal(event.targetId, service.body.id);
      }
      assert.deepEqual([...new Set(audit.body.data.map((e: { ip: string }) => e.ip))].sort(), [
        "198.51.100.3",
        "198.51.100.4",
      ]);
    });
  });
}
