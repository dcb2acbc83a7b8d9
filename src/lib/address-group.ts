import { isIPv4, isIPv6 } from "node:net";

/**
 * The group an address belongs to for per-sender limits: an IPv4 address is its own
 * group; an IPv6 address stands for its /64 (one subscriber usually holds a whole /64, so
 * limits per full address would give such a sender 2^64 allowances). IPv4-mapped IPv6
 * (::ffff:192.0.2.1) is the IPv4 address. Anything else is returned as it is.
 */
export function addressGroup(ip: string): string {
  if (isIPv4(ip) || !isIPv6(ip)) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1] as string;
  const [head = "", tail] = ip.toLowerCase().split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  // An embedded IPv4 tail takes two groups; it can only be in the last 64 bits.
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups
    .slice(0, 4)
    .map((group) => Number.parseInt(group, 16).toString(16))
    .join(":")}::/64`;
}
