import { bytesToBase62 } from "../keys/base62.ts";
import { pooledRandomBytes } from "./random-pool.ts";

/**
 * Resource ids: `<kind>_<12 hex chars of creation time in ms><15 base62 random chars>`.
 * They sort by creation time, which gives stable cursor pagination, and carry 88 random
 * bits so they cannot be guessed. Ids are not secrets.
 */
export function newId(kind: string, now: number): string {
  return `${kind}_${Math.floor(now).toString(16).padStart(12, "0")}${bytesToBase62(pooledRandomBytes(11), 15)}`;
}
