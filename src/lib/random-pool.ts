import { randomFillSync } from "node:crypto";

const POOL_BYTES = 4096;
let pool = Buffer.allocUnsafeSlow(POOL_BYTES);
let used = POOL_BYTES;

/**
 * Bytes from the CSPRNG, drawn 4 KiB at a time. Each call into node's CSPRNG costs a few
 * µs (~3 µs here, more under load), and a refresh rotation needs two draws (the new token
 * and its id): this makes them a copy. Every byte is handed out once, and its place in the
 * pool is zeroed as it goes. Keeping not-yet-used random bytes in memory exposes nothing
 * new: OpenSSL's generator keeps its own state in the same process memory, and whoever
 * can read that can predict its output anyway. node's randomUUID buffers the same way.
 */
export function pooledRandomBytes(size: number): Buffer {
  if (size > POOL_BYTES) return randomFillSync(Buffer.alloc(size));
  if (used + size > POOL_BYTES) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    used = 0;
  }
  const out = Buffer.from(pool.subarray(used, used + size));
  pool.fill(0, used, used + size);
  used += size;
  return out;
}
