import { BlockList, isIP } from "node:net";
import ipaddr from "ipaddr.js";

/** Entries a key's allowlist may hold: enough for a fleet's egress ranges, few enough to check in microseconds. */
export const MAX_ALLOWED_ADDRESSES = 64;
/** The longest entry: a full IPv6 address with an IPv4 tail and a /128. */
export const ALLOWED_ADDRESS_MAX_CHARS = 49;

const PREFIX = /^(?:0|[1-9]\d{0,2})$/;

/** ::ffff:0:0/96, where IPv6 holds the IPv4 addresses (RFC 4291 §2.5.5.2). */
const IPV4_MAPPED = new BlockList();
IPV4_MAPPED.addSubnet("::ffff:0:0", 96, "ipv6");

/**
 * What is wrong with one allowlist entry (an IPv4 or IPv6 address, or a CIDR range such as
 * `10.0.0.0/8` or `2001:db8::/32`), or null when it is fine. Zone ids (`fe80::1%eth0`)
 * are refused: they name an interface of one machine, not a place on the network. So is a
 * range with host bits set (`203.0.113.5/24`): it reads like one host and means 256, and
 * the answer names the range it stands for.
 */
export function allowedAddressProblem(entry: string): string | null {
  if (entry.includes(",")) return "holds a comma: give one address or range per entry";
  const slash = entry.indexOf("/");
  const address = slash < 0 ? entry : entry.slice(0, slash);
  const family = address.includes("%") ? 0 : isIP(address);
  if (family === 0) return "must be an IPv4 or IPv6 address, or a CIDR range such as 10.0.0.0/8";
  if (slash < 0) return null;
  const prefix = entry.slice(slash + 1);
  const max = family === 4 ? 32 : 128;
  if (!PREFIX.test(prefix) || Number(prefix) > max) {
    return `has a prefix length that is not a whole number from 0 to ${max}`;
  }
  // "::ffff:192.168.1.0/24" reads as an IPv4 /24 but is the IPv6 range ::/24, which holds
  // every IPv4-mapped address, so every IPv4 client would match (BlockList matches IPv4
  // against IPv6 ranges as mapped). Told before the host bits, whose answer (::/24) would
  // be the same trap.
  if (family === 6 && Number(prefix) < 96 && IPV4_MAPPED.check(address, "ipv6")) {
    return "is an IPv4-mapped address with a prefix under 96, which spans every IPv4 address: write the IPv4 range (e.g. 192.168.1.0/24)";
  }
  const network = (family === 4 ? ipaddr.IPv4 : ipaddr.IPv6).networkAddressFromCIDR(entry);
  if (network.toNormalizedString() !== ipaddr.parse(address).toNormalizedString()) {
    return `has host bits set: the range is ${network.toString()}/${prefix}`;
  }
  return null;
}

/**
 * The addresses a key may be used from. Matching is node's `BlockList` (CIDR ranges, both
 * families; an IPv4-mapped IPv6 address such as `::ffff:10.1.2.3` matches IPv4 rules, as a
 * dual-stack socket reports IPv4 peers).
 */
export class AddressAllowlist {
  readonly entries: readonly string[];
  private readonly list = new BlockList();

  /** Entries must have passed `allowedAddressProblem`. */
  constructor(entries: readonly string[]) {
    this.entries = Object.freeze([...entries]);
    for (const entry of entries) {
      const [address = "", prefix] = entry.split("/");
      const type = isIP(address) === 4 ? "ipv4" : "ipv6";
      if (prefix === undefined) this.list.addAddress(address, type);
      else this.list.addSubnet(address, Number(prefix), type);
    }
  }

  /** False for no address at all: a key bound to addresses is refused wherever its caller's is unknown. */
  allows(address: string | null | undefined): boolean {
    if (typeof address !== "string") return false;
    const family = isIP(address);
    if (family === 0) return false;
    try {
      return this.list.check(address, family === 4 ? "ipv4" : "ipv6");
    } catch {
      return false;
    }
  }
}

/** Built once per distinct list: keys made by one script share theirs. */
const built = new Map<string, AddressAllowlist>();
const BUILT_MAX = 1024;
/** By the record's own array: a cached caller key, checked on every call, skips the join. */
const byArray = new WeakMap<readonly string[], AddressAllowlist>();

/** The allowlist of a key's stored entries; null when the key may be used from anywhere. */
export function allowlistOf(entries: readonly string[] | null): AddressAllowlist | null {
  if (entries === null) return null;
  let allowlist = byArray.get(entries);
  if (allowlist !== undefined) return allowlist;
  const name = entries.join(" ");
  allowlist = built.get(name);
  if (allowlist === undefined) {
    if (built.size >= BUILT_MAX) built.clear();
    allowlist = new AddressAllowlist(entries);
    built.set(name, allowlist);
  }
  byArray.set(entries, allowlist);
  return allowlist;
}
