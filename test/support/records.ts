import { randomBytes } from "node:crypto";
import { digestKey, generateKey, keyHint } from "../../src/keys/key-format.ts";
import type { KeyPolicy } from "../../src/keys/key-policy.ts";
import { newId } from "../../src/lib/ids.ts";
import type { ApiKeyRecord, AuditEventInput, RefreshTokenRecord, UserRecord } from "../../src/storage/types.ts";
import { digestOpaqueToken, newOpaqueToken } from "../../src/tokens/opaque-token.ts";

const DAY = 86_400_000;

/** The defaults' key policy, for tests that build a KeyService of their own. */
export const TEST_KEY_POLICY: KeyPolicy = Object.freeze({
  prefix: "gate",
  maxLifetimeSeconds: 90 * 86_400,
  allowNoExpiry: false,
  defaultRateLimit: Object.freeze({ limit: 1000, windowSeconds: 60 }),
  maxGracePeriodSeconds: 30 * 86_400,
});

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
    allowedAddresses: null,
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

/** A live refresh token row of `userId` (random secret, an hour to live), for tests that write storage directly. */
export function refreshTokenRecord(
  userId: string,
  createdAt: number,
  fields: Partial<RefreshTokenRecord> = {},
): RefreshTokenRecord {
  return {
    id: newId("rtk", createdAt),
    digest: digestOpaqueToken(newOpaqueToken()),
    familyId: `fam_${newId("f", createdAt)}`,
    userId,
    clientId: "test",
    scope: "",
    createdAt,
    familyExpiresAt: createdAt + 3_600_000,
    expiresAt: createdAt + 3_600_000,
    usedAt: null,
    replacedBy: null,
    revokedAt: null,
    ...fields,
  };
}

/** An audit event about a user, for storage calls that take one; `fields` override. */
export function auditEventInput(fields: Partial<AuditEventInput> & Pick<AuditEventInput, "action">): AuditEventInput {
  return {
    at: Date.now(),
    actor: "anonymous",
    targetType: "user",
    targetId: null,
    outcome: "success",
    ip: null,
    userAgent: null,
    requestId: null,
    detail: null,
    ...fields,
  };
}
