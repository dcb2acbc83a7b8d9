import { type ActorContext, auditEvent } from "../audit/context.ts";
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from "../errors/gatehouse-error.ts";
import type { Clock } from "../lib/clock.ts";
import { newId } from "../lib/ids.ts";
import { unstorableText } from "../lib/storable-text.ts";
import type { OnIssued } from "../observability/issued.ts";
import { holdsInherited, holdsPermissions } from "../storage/key-columns.ts";
import type { ApiKeyRecord, AuditEventInput, KeyUpdate, RateLimitPolicy, Storage } from "../storage/types.ts";
import { digestKey, generateKey, keyHint, type RandomBytes } from "./key-format.ts";
import type { KeyPolicy } from "./key-policy.ts";
import { assertValidKeyFields, MIN_LIFETIME_SECONDS } from "./key-rules.ts";
import { keyStatus } from "./key-status.ts";
import { missingPermissions } from "./permissions.ts";

export interface CreateKeyInput {
  name: string;
  scopes: string[];
  permissions?: string[];
  /** Omitted: the policy's maximum lifetime. null: never expires (only if policy allows). */
  expiresInSeconds?: number | null;
  rateLimit?: RateLimitPolicy;
  ownerId?: string;
  metadata?: Record<string, unknown>;
  /** Addresses and CIDR ranges the key may be used from; omitted: anywhere. */
  allowedAddresses?: string[];
}

export interface CreatedKey {
  record: ApiKeyRecord;
  /** The secret. Returned once, never stored. */
  key: string;
}

/** The caller of a management operation: a key's permissions bound what it may do. */
export interface Caller {
  context: ActorContext;
  /** Permissions held; null for the local operator (CLI), who holds them all. */
  permissions: readonly string[] | null;
}

/** What a refused attempt was: the action it tried, and the key it aimed at, if any. */
interface Attempt {
  action: "key.create" | "key.update" | "key.revoke" | "key.rotate";
  targetId: string | null;
  /** Safe detail to keep with the refusal (field names, never values or secrets). */
  detail?: Record<string, unknown>;
}

/**
 * How often a change is tried when its key's permissions changed between the check and
 * the write (each try judges the caller again on what the key holds then).
 */
const ATTEMPTS = 3;

/**
 * API key management: create, read, change, rotate, revoke. Knows nothing of HTTP.
 * A caller may only grant, change or act on keys whose permissions it holds itself,
 * so no key can mint a key more powerful than itself.
 */
export class KeyService {
  private readonly storage: Storage;
  private readonly policy: KeyPolicy;
  private readonly clock: Clock;
  private readonly randomBytes: RandomBytes | undefined;
  private readonly onChange: (keyId: string) => void | Promise<void>;
  private readonly onIssued: OnIssued;
  private readonly recordRefusal: (event: AuditEventInput) => void;

  constructor(options: {
    storage: Storage;
    policy: KeyPolicy;
    clock: Clock;
    randomBytes?: RandomBytes;
    /**
     * Called after a key is created or changes, so caches drop it and indexes take it in;
     * the operation answers only once it has settled.
     */
    onChange?: (keyId: string) => void | Promise<void>;
    onIssued?: OnIssued;
    /**
     * Takes the audit events of refused attempts. A refusal changes nothing, so it has no
     * transaction to ride in; it goes to the batched audit log like a failed verification.
     */
    recordRefusal: (event: AuditEventInput) => void;
  }) {
    this.storage = options.storage;
    this.policy = options.policy;
    this.clock = options.clock;
    this.randomBytes = options.randomBytes;
    this.onChange = options.onChange ?? (() => {});
    this.onIssued = options.onIssued ?? (() => {});
    this.recordRefusal = options.recordRefusal;
  }

  /**
   * Refuses, and audits, an attempt to grant or act on permissions the caller lacks: an
   * escalation attempt is exactly what the audit log is there to show.
   */
  private assertMayGrant(caller: Caller, permissions: readonly string[], attempt: Attempt): void {
    if (caller.permissions === null) return;
    const missing = missingPermissions(caller.permissions, permissions);
    if (missing.length === 0) return;
    this.recordRefusal(
      auditEvent(caller.context, this.clock(), {
        action: attempt.action,
        outcome: "failure",
        targetType: "key",
        targetId: attempt.targetId,
        detail: { code: "FORBIDDEN", missing, ...attempt.detail },
      }),
    );
    throw new ForbiddenError(missing);
  }

  private expiryFor(expiresInSeconds: number | null | undefined, now: number): number | null {
    if (expiresInSeconds === null) {
      if (!this.policy.allowNoExpiry) {
        throw new ValidationError(
          "Keys must expire here: omit expiresInSeconds for the maximum lifetime, or give a number of seconds.",
        );
      }
      return null;
    }
    const seconds = expiresInSeconds ?? this.policy.maxLifetimeSeconds;
    if (seconds > this.policy.maxLifetimeSeconds) {
      const rule = `may be at most ${this.policy.maxLifetimeSeconds} (the maximum key lifetime, GATEHOUSE_KEY_MAX_LIFETIME_SECONDS)`;
      throw new ValidationError(`expiresInSeconds ${rule}.`, [{ path: "/expiresInSeconds", message: rule }]);
    }
    return now + seconds * 1000;
  }

  private newRecord(
    input: Omit<
      ApiKeyRecord,
      "id" | "digest" | "hint" | "createdAt" | "revokedAt" | "revokedReason" | "replacedBy" | "lastUsedAt"
    >,
    now: number,
  ): CreatedKey {
    const key = generateKey(this.policy.prefix, this.randomBytes);
    const record: ApiKeyRecord = {
      ...input,
      id: newId("key", now),
      digest: digestKey(key),
      hint: keyHint(key),
      createdAt: now,
      revokedAt: null,
      revokedReason: null,
      replacedBy: null,
      lastUsedAt: null,
    };
    return { record, key };
  }

  async create(input: CreateKeyInput, caller: Caller): Promise<CreatedKey> {
    // Checked here, not only in the HTTP schema, so the CLI and init store only keys the
    // API would have accepted.
    assertValidKeyFields(input);
    const now = this.clock();
    const permissions = [...new Set(input.permissions ?? [])];
    this.assertMayGrant(caller, permissions, { action: "key.create", targetId: null });
    const created = this.newRecord(
      {
        name: input.name,
        scopes: [...new Set(input.scopes)],
        permissions,
        ownerId: input.ownerId ?? null,
        metadata: input.metadata ?? null,
        rateLimit: input.rateLimit ?? null,
        allowedAddresses: input.allowedAddresses ? [...new Set(input.allowedAddresses)] : null,
        expiresAt: this.expiryFor(input.expiresInSeconds, now),
        rotatedFrom: null,
      },
      now,
    );
    await this.storage.keys.insert(
      created.record,
      auditEvent(caller.context, now, {
        action: "key.create",
        outcome: "success",
        targetType: "key",
        targetId: created.record.id,
        detail: {
          hint: created.record.hint,
          scopes: created.record.scopes,
          permissions,
          ...(created.record.allowedAddresses ? { allowedAddresses: created.record.allowedAddresses } : {}),
        },
      }),
    );
    this.onIssued("api_key");
    await this.onChange(created.record.id);
    return created;
  }

  async get(id: string): Promise<ApiKeyRecord> {
    const record = await this.storage.keys.findById(id);
    if (!record) throw new NotFoundError(`No key with id ${id}.`);
    return record;
  }

  async list(query: { ownerId?: string; before?: string; limit: number }): Promise<ApiKeyRecord[]> {
    return this.storage.keys.list(query);
  }

  /**
   * Loads a key the caller is allowed to act on. The write that follows must be made only
   * while the key still holds the permissions judged here (storage's `holding`): between
   * this read and that write another request may give the key more (on PostgreSQL, where
   * the two are separate statements), and a weaker caller must not then act on it.
   */
  private async manageable(id: string, caller: Caller, attempt: Attempt): Promise<ApiKeyRecord> {
    const record = await this.get(id);
    this.assertMayGrant(caller, record.permissions, attempt);
    return record;
  }

  /** What to answer when every attempt met a key that had changed since it was read. */
  private changedUnderneath(id: string): ConflictError {
    return new ConflictError(`Key ${id} kept changing while this request was made; try again.`);
  }

  async update(id: string, changes: KeyUpdate, caller: Caller): Promise<ApiKeyRecord> {
    assertValidKeyFields(changes);
    const attempt: Attempt = { action: "key.update", targetId: id, detail: { fields: Object.keys(changes) } };
    const normalised: KeyUpdate = {
      ...changes,
      ...(changes.scopes ? { scopes: [...new Set(changes.scopes)] } : {}),
      ...(changes.permissions ? { permissions: [...new Set(changes.permissions)] } : {}),
      ...(changes.allowedAddresses ? { allowedAddresses: [...new Set(changes.allowedAddresses)] } : {}),
    };
    for (let tries = 0; tries < ATTEMPTS; tries++) {
      const current = await this.manageable(id, caller, attempt);
      if (changes.permissions) this.assertMayGrant(caller, changes.permissions, attempt);
      const now = this.clock();
      const updated = await this.storage.keys.update(
        id,
        normalised,
        (before, after) =>
          auditEvent(caller.context, now, {
            action: "key.update",
            outcome: "success",
            targetType: "key",
            targetId: id,
            detail: updateDetail(normalised, before, after),
          }),
        current.permissions,
      );
      if (updated) {
        await this.onChange(id);
        return updated;
      }
      // Nothing written: the key is gone (the next read says so) or its permissions changed.
    }
    throw this.changedUnderneath(id);
  }

  async revoke(id: string, reason: string, caller: Caller): Promise<ApiKeyRecord> {
    const unstorable = unstorableText(reason);
    if (unstorable !== null) {
      throw new ValidationError(`reason ${unstorable}.`, [{ path: "/reason", message: unstorable }]);
    }
    for (let tries = 0; tries < ATTEMPTS; tries++) {
      const current = await this.manageable(id, caller, { action: "key.revoke", targetId: id });
      const now = this.clock();
      const record = await this.storage.keys.revoke(
        id,
        now,
        reason,
        auditEvent(caller.context, now, {
          action: "key.revoke",
          outcome: "success",
          targetType: "key",
          targetId: id,
          detail: { reason },
        }),
        current.permissions,
      );
      if (!record) throw new NotFoundError(`No key with id ${id}.`);
      // Other permissions than were judged: nothing was written; judged again.
      if (!holdsPermissions(record, current.permissions)) continue;
      await this.onChange(id);
      return record;
    }
    throw this.changedUnderneath(id);
  }

  /**
   * Issues a replacement with the same name, scopes, permissions, owner, metadata, rate
   * limit and allowed addresses. The old key keeps working for `gracePeriodSeconds` (0: stops at once),
   * never beyond its own expiry. A key can be rotated once; rotate the new one next.
   */
  async rotate(
    id: string,
    options: { gracePeriodSeconds: number; expiresInSeconds?: number | null },
    caller: Caller,
  ): Promise<CreatedKey & { previous: { id: string; expiresAt: number | null; revokedAt: number | null } }> {
    if (options.expiresInSeconds !== undefined) assertValidKeyFields({ expiresInSeconds: options.expiresInSeconds });
    for (let tries = 0; tries < ATTEMPTS; tries++) {
      const rotated = await this.rotateOnce(id, options, caller);
      if (rotated) return rotated;
      // The key's permissions or settings changed since they were read: judged again, and
      // the replacement copies what the key holds now.
    }
    throw this.changedUnderneath(id);
  }

  /** One attempt at `rotate`; null when the key changed after it was read (permissions or what is copied). */
  private async rotateOnce(
    id: string,
    options: { gracePeriodSeconds: number; expiresInSeconds?: number | null },
    caller: Caller,
  ): Promise<(CreatedKey & { previous: { id: string; expiresAt: number | null; revokedAt: number | null } }) | null> {
    const old = await this.manageable(id, caller, { action: "key.rotate", targetId: id });
    const now = this.clock();
    if (options.gracePeriodSeconds > this.policy.maxGracePeriodSeconds) {
      throw new ValidationError(`gracePeriodSeconds may be at most ${this.policy.maxGracePeriodSeconds}.`);
    }
    const status = keyStatus(old, now);
    if (status !== "active" || old.replacedBy !== null) {
      // Say which: the caller may not know the key was revoked, or replaced by someone else.
      const why =
        status !== "active" ? `This key is ${status}` : `This key was rotated already (into ${old.replacedBy})`;
      throw new ConflictError(`${why}: only an active key that has not been rotated already can be rotated.`);
    }
    // The replacement gets the lifetime the old key was given, unless told otherwise, within
    // today's bounds (a key made before the minimum existed may have had less; one made
    // never to expire, while that was allowed, gets the maximum lifetime once it is not).
    const lifetime =
      options.expiresInSeconds !== undefined
        ? options.expiresInSeconds
        : old.expiresAt === null
          ? this.policy.allowNoExpiry
            ? null
            : undefined
          : Math.max(
              MIN_LIFETIME_SECONDS,
              Math.min(Math.round((old.expiresAt - old.createdAt) / 1000), this.policy.maxLifetimeSeconds),
            );
    const created = this.newRecord(
      {
        name: old.name,
        scopes: old.scopes,
        permissions: old.permissions,
        ownerId: old.ownerId,
        metadata: old.metadata,
        rateLimit: old.rateLimit,
        allowedAddresses: old.allowedAddresses,
        expiresAt: this.expiryFor(lifetime, now),
        rotatedFrom: old.id,
      },
      now,
    );
    const graceEnd = now + options.gracePeriodSeconds * 1000;
    const revokeOld = options.gracePeriodSeconds === 0;
    const rotated = await this.storage.keys.rotate(
      id,
      created.record,
      { at: now, oldExpiresAt: graceEnd, revokeOld },
      auditEvent(caller.context, now, {
        action: "key.rotate",
        outcome: "success",
        targetType: "key",
        targetId: id,
        detail: { replacement: created.record.id, gracePeriodSeconds: options.gracePeriodSeconds },
      }),
      // Written only while the key holds what was read: the permissions judged, and the
      // settings copied (an allowlist set meanwhile must not be lost on the replacement).
      old,
    );
    if (!rotated) {
      const current = await this.storage.keys.findById(id);
      if (current && !holdsInherited(current, old)) return null;
      throw new ConflictError("Only an active key that has not been rotated already can be rotated.");
    }
    this.onIssued("api_key");
    await this.onChange(id);
    const previous = await this.get(id);
    return { ...created, previous: { id, expiresAt: previous.expiresAt, revokedAt: previous.revokedAt } };
  }
}

/**
 * What a key.update event says: the names of the fields whose value changed (none when the
 * values sent were those the key had), and, for what bounds a key's power (permissions,
 * scopes, rate limit), each one sent as it was before and after.
 */
function updateDetail(changes: KeyUpdate, before: ApiKeyRecord, after: ApiKeyRecord): Record<string, unknown> {
  const fields = (
    ["name", "scopes", "permissions", "ownerId", "metadata", "rateLimit", "allowedAddresses"] as const
  ).filter((field) => changes[field] !== undefined && JSON.stringify(before[field]) !== JSON.stringify(after[field]));
  const beforeAndAfter = (field: "scopes" | "permissions" | "rateLimit" | "allowedAddresses") =>
    changes[field] === undefined ? {} : { [field]: { before: before[field], after: after[field] } };
  return {
    fields,
    ...beforeAndAfter("scopes"),
    ...beforeAndAfter("permissions"),
    ...beforeAndAfter("rateLimit"),
    // Where a key may be used from is a security setting: the log says what it was and became.
    ...beforeAndAfter("allowedAddresses"),
  };
}
