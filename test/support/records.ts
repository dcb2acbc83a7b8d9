import { randomBytes } from "node:crypto";
import { digestKey, generateKey, keyHint } from "../../src/keys/key-format.ts";
import { newId } from "../../src/lib/ids.ts";
import type { ApiKeyRecord, UserRecord } from "../../src/storage/types.ts";

const DAY = 86_400_000;

/** A stored key's record as KeyService would build it, for tests that write storage directly. */
export function keyRecord(createdAt: number, fields: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  const secret = generateKey("gate");
  return {
    id: newId("key", createdAt),
    digest: digestKey(secret),
    hint: keyHint(secret),
    name: "k",
    scopes: [],
    permissions: [],
    ownerId: null,
    metadata: null,
    rateLimit: null,
    createdAt,
    expiresAt: createdAt + 90 * DAY,
    revokedAt: null,
    revokedReason: null,
    replacedBy: null,
    rotatedFrom: null,
    lastUsedAt: null,
    ...fields,
  };
}

/** An active user row with a placeholder hash, for tests that write storage directly. */
export function userRecord(id: string, now: number, fields: Partial<UserRecord> = {}): UserRecord {
  return {
    id,
    email: `${randomBytes(4).toString("hex")}@example.com`,
    passwordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
    scopes: [],
    status: "active",
    createdAt: now,
    updatedAt: now,
    disabledAt: null,
    passwordChangedAt: now,
    ...fields,
  };
}
