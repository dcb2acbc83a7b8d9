/**
 * The storage contract. Domain code depends on these interfaces only; `sqlite/` and
 * `postgres/` implement them with the same behaviour, and test/storage/*.test.ts runs
 * one suite against both.
 *
 * Every mutating method is atomic on its own: it commits everything it was given
 * (including its audit event) or nothing. Times are milliseconds since the epoch.
 */

export interface RateLimitPolicy {
  limit: number;
  windowSeconds: number;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  /** SHA-256 of the whole key. Never leaves storage or the verifier. */
  digest: Buffer;
  /** Non-secret label, e.g. `gate_0h6Z…x9Yz`. */
  hint: string;
  scopes: string[];
  /** Gatehouse's own admin permissions (`keys:write`, …); empty for customer keys. */
  permissions: string[];
  ownerId: string | null;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimitPolicy | null;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  revokedReason: string | null;
  /** Set on the old key when it was rotated: the key that replaces it. */
  replacedBy: string | null;
  /** Set on the new key when it came from a rotation. */
  rotatedFrom: string | null;
  lastUsedAt: number | null;
}

export interface AuditEventInput {
  at: number;
  /** `key:<id>`, `user:<id>`, `cli`, `github`, or `anonymous`. */
  actor: string;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: "success" | "failure";
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  /** Structured detail. Never a secret: callers pass hints and reason codes only. */
  detail: Record<string, unknown> | null;
}

export interface AuditEvent extends AuditEventInput {
  id: number;
}

export interface AuditQuery {
  action?: string;
  actor?: string;
  targetId?: string;
  outcome?: "success" | "failure";
  since?: number;
  until?: number;
  /** Return events with id below this (cursor pagination, newest first). */
  before?: number;
  limit: number;
}

export interface KeyListQuery {
  ownerId?: string;
  /** Return keys with id below this (cursor pagination, newest first). */
  before?: string;
  limit: number;
}

export interface KeyUpdate {
  name?: string;
  scopes?: string[];
  permissions?: string[];
  ownerId?: string | null;
  metadata?: Record<string, unknown> | null;
  rateLimit?: RateLimitPolicy | null;
}

export interface UsageIncrement {
  keyId: string;
  /** Start of the minute the uses fell in. */
  bucket: number;
  outcome: string;
  count: number;
}

export interface UsageRow {
  bucket: number;
  outcome: string;
  count: number;
}

export interface KeyRepository {
  insert(record: ApiKeyRecord, audit: AuditEventInput | null): Promise<void>;
  /** Bulk load for benchmarks and imports: one transaction, no audit events. */
  insertMany(records: readonly ApiKeyRecord[]): Promise<void>;
  findByDigest(digest: Buffer): Promise<ApiKeyRecord | null>;
  findById(id: string): Promise<ApiKeyRecord | null>;
  list(query: KeyListQuery): Promise<ApiKeyRecord[]>;
  update(id: string, changes: KeyUpdate, audit: AuditEventInput | null): Promise<ApiKeyRecord | null>;
  /**
   * Revokes the key if it is not revoked yet. Returns the record as it is afterwards,
   * or null when there is no such key.
   */
  revoke(id: string, at: number, reason: string, audit: AuditEventInput | null): Promise<ApiKeyRecord | null>;
  /**
   * Atomically: inserts `replacement`, and on the old key sets replacedBy and caps its
   * expiry at `oldExpiresAt` (or revokes it when `revokeOld`), but only if the old key
   * is still active and not rotated already. Returns false (and writes nothing) otherwise.
   */
  rotate(
    oldId: string,
    replacement: ApiKeyRecord,
    change: { at: number; oldExpiresAt: number; revokeOld: boolean },
    audit: AuditEventInput | null,
  ): Promise<boolean>;
  /** Records last-use times, keeping the latest. */
  touch(lastUsed: ReadonlyMap<string, number>): Promise<void>;
  count(): Promise<number>;
}

export interface AuditRepository {
  append(events: readonly AuditEventInput[]): Promise<void>;
  query(query: AuditQuery): Promise<AuditEvent[]>;
}

export interface UsageRepository {
  /** Adds the counts to the per-minute buckets. */
  add(increments: readonly UsageIncrement[]): Promise<void>;
  read(keyId: string, since: number, until: number): Promise<UsageRow[]>;
}

export interface MetaRepository {
  get(name: string): Promise<string | null>;
  set(name: string, value: string): Promise<void>;
}

export interface Storage {
  readonly kind: "sqlite" | "postgres";
  readonly keys: KeyRepository;
  readonly audit: AuditRepository;
  readonly usage: UsageRepository;
  readonly meta: MetaRepository;
  /** Cheap liveness probe for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
