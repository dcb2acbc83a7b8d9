import type { ApiKeyRecord } from "../storage/types.ts";

export type KeyStatus = "active" | "expired" | "revoked";

export function keyStatus(record: ApiKeyRecord, now: number): KeyStatus {
  if (record.revokedAt !== null && record.revokedAt <= now) return "revoked";
  if (record.expiresAt !== null && record.expiresAt <= now) return "expired";
  return "active";
}
