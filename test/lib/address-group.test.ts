import assert from "node:assert/strict";
import { test } from "node:test";
import { addressGroup } from "../../src/lib/address-group.ts";

test("IPv4 addresses are their own group; IPv6 addresses stand for their /64", () => {
  assert.equal(addressGroup("198.51.100.7"), "198.51.100.7");
  assert.equal(addressGroup("::ffff:198.51.100.7"), "198.51.100.7");
  for (const ip of [
    "2001:db8:1:2::1",
    "2001:db8:1:2:ffff:ffff:ffff:ffff",
    "2001:0DB8:0001:0002:0:0:0:9",
    "2001:db8:1:2::192.0.2.1",
  ]) {
    assert.equal(addressGroup(ip), "2001:db8:1:2::/64", ip);
  }
  assert.equal(addressGroup("2001:db8::1"), "2001:db8:0:0::/64");
  assert.equal(addressGroup("::1"), "0:0:0:0::/64");
  assert.equal(addressGroup("fe80::1:2:3:4"), "fe80:0:0:0::/64");
  assert.notEqual(addressGroup("2001:db8:1:2::1"), addressGroup("2001:db8:1:3::1"));
  assert.equal(addressGroup("not an address"), "not an address");
});
