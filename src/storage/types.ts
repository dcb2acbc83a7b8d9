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
  /**
   * Addresses and CIDR ranges the key may be used from (keys/address-allowlist.ts); null
   * for anywhere.
   */
  allowedAddresses: string[] | null;
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

/** What a rotation's replacement copies from the key it replaces. */
export type InheritedKeyFields = Pick<
  ApiKeyRecord,
  "name" | "scopes" | "permissions" | "ownerId" | "metadata" | "rateLimit" | "allowedAddresses"
>;

export interface KeyUpdate {
  name?: string;
  scopes?: string[];
  permissions?: string[];
  ownerId?: string | null;
  metadata?: Record<string, unknown> | null;
  rateLimit?: RateLimitPolicy | null;
  allowedAddresses?: string[] | null;
}

export interface UsageIncrement {
  keyId: string;
  /** Start of the minute the uses fell in. */
  bucket: number;
  outcome: string;
  count: number;
  /** The latest use in this batch (valid uses only); the row keeps the latest it saw. */
  lastAt?: number | null;
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
  /**
   * Changes the key and writes `audit` (an event, or one made from the record before and
   * after the change, both read in its transaction); returns the record afterwards, or
   * null (writing nothing) when there is no such key or, with `holding`, when it no longer
   * holds exactly these permissions. `holding` makes the caller's permission check and the
   * write one: what was judged is what is changed.
   */
  update(
    id: string,
    changes: KeyUpdate,
    audit: AuditEventInput | ((before: ApiKeyRecord, after: ApiKeyRecord) => AuditEventInput) | null,
    holding?: readonly string[],
  ): Promise<ApiKeyRecord | null>;
  /**
   * Revokes the key if it is not revoked yet and, with `holding`, still holds exactly these
   * permissions (and only then writes `audit`). Returns the record as it is afterwards, or
   * null when there is no such key.
   */
  revoke(
    id: string,
    at: number,
    reason: string,
    audit: AuditEventInput | null,
    holding?: readonly string[],
  ): Promise<ApiKeyRecord | null>;
  /**
   * Atomically: inserts `replacement`, and on the old key sets replacedBy and caps its
   * expiry at `oldExpiresAt` (or revokes it when `revokeOld`), but only if the old key
   * is still active, not rotated already and, with `holding`, still holds exactly those
   * values (`holdsInherited`): the permissions the caller was judged on, and the
   * settings the replacement copies, so that none changed meanwhile (an allowlist set, a
   * scope taken away) is lost on it. Returns false (and writes nothing) otherwise.
   */
  rotate(
    oldId: string,
    replacement: ApiKeyRecord,
    change: { at: number; oldExpiresAt: number; revokeOld: boolean },
    audit: AuditEventInput | null,
    holding?: InheritedKeyFields,
  ): Promise<boolean>;
  count(): Promise<number>;
  /**
   * Keys with permissions (those that call Gatehouse itself) that expire in (`from`,
   * `until`], neither revoked nor replaced by a rotation (a rotated key's end is chosen),
   * soonest first, at most `limit`.
   */
  expiringWithPermissions(from: number, until: number, limit: number): Promise<ApiKeyRecord[]>;
  /**
   * Every key verification could accept at `now` (neither revoked nor expired by then),
   * in pages of at most `pageSize` ordered by id, with only what verification reads:
   * what an in-memory index loads.
   */
  scanActive(now: number, pageSize: number): AsyncIterable<IndexedKey[]>;
  /** The number of the newest entry in the key change log; 0 when it is empty. */
  lastChange(): Promise<number>;
  /**
   * Ids of keys inserted, deleted, or changed in a column verification reads, after
   * change `since`: at most `limit` entries, oldest first. `last` is the number of the
   * last one returned (`since` when none); `gap` is true when entries after `since` were
   * pruned already, so the caller must reload everything.
   */
  changesSince(since: number, limit: number): Promise<KeyChanges>;
  /** Drops change log entries older than `before`, always keeping the newest. */
  pruneChanges(before: number): Promise<number>;
}

/** The fields of a key that verification reads. */
export type IndexedKey = Pick<
  ApiKeyRecord,
  "digest" | "id" | "scopes" | "permissions" | "ownerId" | "rateLimit" | "allowedAddresses" | "expiresAt" | "revokedAt"
>;

export interface KeyChanges {
  ids: string[];
  last: number;
  gap: boolean;
}

export interface AuditRepository {
  append(events: readonly AuditEventInput[]): Promise<void>;
  query(query: AuditQuery): Promise<AuditEvent[]>;
}

export interface UsageRepository {
  /** Adds the counts to the per-minute buckets. */
  add(increments: readonly UsageIncrement[]): Promise<void>;
  /**
   * A key's counts with buckets in [since, until): per minute where minute rows are
   * kept, per hour (bucket = the hour's start) where they were rolled up; with
   * `minutesOnly`, minute rows alone (an answer per minute must not put an hour's counts
   * on one minute, whatever the retention was when they were rolled up).
   */
  read(keyId: string, since: number, until: number, options?: { minutesOnly?: boolean }): Promise<UsageRow[]>;
  /**
   * Sums up to `limit` minute rows older than `before` (ms) into their hours' rows and
   * deletes them, in one transaction (housekeeping loops); returns how many minute rows.
   */
  rollUp(before: number, limit: number): Promise<number>;
}

export interface MetaRepository {
  get(name: string): Promise<string | null>;
  set(name: string, value: string): Promise<void>;
  /**
   * Stores `value` under `name` unless a value is there already, atomically; returns the
   * value stored: of nodes claiming at once, every one gets the first writer's.
   */
  claim(name: string, value: string): Promise<string>;
}

// ---------------------------------------------------------------------------------------
// Users, sessions, signing keys and tokens (issue 3).

export type UserStatus = "active" | "disabled";

export interface UserRecord {
  id: string;
  /** Normalised (trimmed, lower-cased); unique. */
  email: string;
  /** PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`). Never leaves the users module. */
  passwordHash: string;
  /** Customer scopes granted to the user; copied into access tokens. */
  scopes: string[];
  status: UserStatus;
  createdAt: number;
  updatedAt: number;
  disabledAt: number | null;
  passwordChangedAt: number;
}

/** What an admin may change on a user (`PATCH /v1/users/{id}`): the scopes, for now. */
export interface UserUpdate {
  scopes?: string[];
}

export interface UserListQuery {
  /** Return users with id below this (cursor pagination, newest first). */
  before?: string;
  limit: number;
}

export interface UserRepository {
  /** Returns false (and writes nothing) when the email is taken. */
  insert(record: UserRecord, audit: AuditEventInput | null): Promise<boolean>;
  findById(id: string): Promise<UserRecord | null>;
  /**
   * The user as committed, once no change of the row is in flight: PostgreSQL waits for a
   * concurrent update (a password change, a disable) to commit rather than read around it.
   * A sign-in reads this after it has issued, so a change either shows here or, starting
   * later, ends what it issued.
   */
  findSettled(id: string): Promise<UserRecord | null>;
  findByEmail(email: string): Promise<UserRecord | null>;
  list(query: UserListQuery): Promise<UserRecord[]>;
  /**
   * Disables the user and, in the same transaction, ends their sessions and revokes
   * their refresh tokens. Returns the record afterwards, or null when there is none.
   */
  disable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null>;
  /**
   * Makes a disabled user active again. What the disable ended (sessions, refresh tokens)
   * stays ended: the user signs in afresh. Returns the record afterwards, or null when
   * there is none.
   */
  enable(id: string, at: number, audit: AuditEventInput | null): Promise<UserRecord | null>;
  /**
   * Sets the fields `changes` holds (`updatedAt` moves only if one differs) and, in the same
   * transaction, writes the event `audit` makes of the user as it was and as it is: a
   * change's audit names the values it replaced, read under the same lock. Returns the
   * record afterwards, or null when there is none. Sessions and tokens are left alone.
   */
  update(
    id: string,
    changes: UserUpdate,
    at: number,
    audit: (before: UserRecord, after: UserRecord) => AuditEventInput | null,
  ): Promise<UserRecord | null>;
  /** Deletes the user with their sessions and refresh tokens. False when there is none. */
  delete(id: string, at: number, audit: AuditEventInput | null): Promise<boolean>;
  /** Replaces the hash only if it is still `expectedHash` (rehash on sign-in after a parameter change). */
  rehash(id: string, expectedHash: string, newHash: string, at: number): Promise<boolean>;
  /**
   * Sets a new password hash and, atomically, ends the user's sessions and revokes their
   * refresh token families, except the session and family the caller is using. Only if
   * the password was last changed at `changedAt` (the one the caller checked): of two
   * changes checked against the same password, one wins. False when nothing was changed.
   */
  changePassword(id: string, change: PasswordChange, audit: AuditEventInput | null): Promise<boolean>;
}

/** A password change as storage writes it (UserRepository.changePassword). */
export interface PasswordChange {
  passwordHash: string;
  at: number;
  /** When the password being replaced was set: the change happens only if it still is. */
  changedAt: number;
  keepSessionId: string | null;
  keepFamilyId: string | null;
  /**
   * Also for a disabled user (an admin setting the password before enabling the user
   * again); without it, only an active user's password changes.
   */
  evenIfDisabled?: boolean;
}

export type SigningAlgorithm = "RS256" | "ES256" | "EdDSA" | "HS256";

/**
 * Life of a signing key: `next` (published, not signing yet) → `current` (signs) →
 * `retired` (published until every token it signed has expired, then deleted).
 */
export type SigningKeyState = "next" | "current" | "retired";

export interface SigningKeyRecord {
  kid: string;
  alg: SigningAlgorithm;
  state: SigningKeyState;
  /** Public JWK as JSON (never private members). */
  publicJwk: string;
  /** AES-256-GCM sealed PKCS#8 DER of the private key, bound to the kid. */
  sealedPrivateKey: Buffer;
  createdAt: number;
  activatedAt: number | null;
  retiredAt: number | null;
  /** For retired keys: when the last token it signed expires; deleted after that. */
  publishUntil: number | null;
}

export interface SigningKeyRepository {
  /** Every key not yet past its publishUntil, oldest first. */
  list(now: number): Promise<SigningKeyRecord[]>;
  /** Inserts keys (first start): only if no key is current yet. Returns false otherwise. */
  initialise(records: readonly SigningKeyRecord[], audit: AuditEventInput | null): Promise<boolean>;
  /**
   * Atomically: the `next` key becomes current, the current one (`currentKid`) is retired
   * with `publishUntil`, `newNext` is inserted, and retired keys past their publishUntil
   * are deleted. Only if `currentKid` is still current: false (nothing written) otherwise,
   * so two nodes rotating at once rotate once.
   */
  rotate(
    currentKid: string,
    change: { at: number; publishUntil: number; newNext: SigningKeyRecord },
    audit: AuditEventInput | null,
  ): Promise<boolean>;
  /**
   * Atomically deletes the keys `discard` names, then inserts `fresh` (`gatehouse keys
   * reset-signing`: keys sealed under a lost master key are replaced).
   */
  replace(discard: readonly string[], fresh: readonly SigningKeyRecord[], audit: AuditEventInput | null): Promise<void>;
}

export interface RefreshTokenRecord {
  id: string;
  /**
   * SHA-256 of the token's secret (of the whole token for tokens from before migration 5).
   * The token itself is never stored.
   */
  digest: Buffer;
  familyId: string;
  userId: string;
  clientId: string;
  scope: string;
  createdAt: number;
  /** Absolute end of the family (set at sign-in, carried by every rotation). */
  familyExpiresAt: number;
  /** Idle limit: the token must be used before this. */
  expiresAt: number;
  usedAt: number | null;
  replacedBy: string | null;
  revokedAt: number | null;
}

export type RefreshRotation =
  | { outcome: "rotated" }
  /** The token was already spent: the whole family is now revoked. */
  | { outcome: "reused"; record: RefreshTokenRecord }
  /** The token was revoked (never spent) since it was read: its family had been ended. */
  | { outcome: "revoked"; record: RefreshTokenRecord }
  | { outcome: "unknown" };

/**
 * How a presented refresh token names its record: the record's id (time-ordered, so new
 * rows land at the end of the table's key instead of at a random place) and the digest of
 * its secret, which must match. Tokens issued before the id was part of the token
 * (migration 5) have no id: `id` null, found through their digest.
 */
export interface RefreshTokenRef {
  id: string | null;
  digest: Buffer;
}

/** A password sign-in that handed out tokens (a refresh token family), while it can still refresh. */
export interface TokenSignIn {
  familyId: string;
  clientId: string;
  scope: string;
  /** The oldest of its tokens still stored: the sign-in itself, unless housekeeping pruned it. */
  startedAt: number;
  /** When its current refresh token was issued. */
  lastRefreshedAt: number;
  /** When its current refresh token stops working unless used (idle limit, capped by the family's end). */
  expiresAt: number;
}

/** What a refresh reads before it signs (TokenRepository.findRefreshForRotation). */
export interface RefreshForRotation {
  record: RefreshTokenRecord;
  userActive: boolean;
  /** The user's scopes now, which may differ from the scope the family was issued with. */
  userScopes: string[];
}

export interface TokenRepository {
  insertRefresh(record: RefreshTokenRecord, audit: AuditEventInput | null): Promise<void>;
  /** The token `ref` names, if its digest matches. */
  findRefresh(ref: RefreshTokenRef): Promise<RefreshTokenRecord | null>;
  /**
   * The token `ref` names, whether its user exists and is active, and the user's scopes as
   * they are now (empty when the user is gone): what a refresh checks and signs, in one read.
   */
  findRefreshForRotation(ref: RefreshTokenRef): Promise<RefreshForRotation | null>;
  /**
   * The one place a refresh token is spent. In one transaction: marks the token `ref`
   * names used, but only if it is unused and unrevoked (a conditional write, so of
   * many concurrent calls exactly one succeeds), and inserts `replacement`. If the
   * token was spent already (or revoked), revokes its whole family instead and writes
   * `reuseAudit`.
   */
  rotateRefresh(
    ref: RefreshTokenRef,
    replacement: RefreshTokenRecord,
    at: number,
    audits: { rotated: AuditEventInput | null; reused: AuditEventInput | null },
  ): Promise<RefreshRotation>;
  /**
   * Revokes every token in the family and, optionally, denies an access token by jti;
   * returns how many tokens this call revoked. With `auditOnlyIfRevoked`, the audit event is
   * written only when that is more than none (of concurrent calls, the one that ended it).
   */
  revokeFamily(
    familyId: string,
    change: { at: number; denyJti: { jti: string; expiresAt: number } | null; auditOnlyIfRevoked?: boolean },
    audit: AuditEventInput | null,
  ): Promise<number>;
  isFamilyRevoked(familyId: string): Promise<boolean>;
  /**
   * The user's sign-ins whose current refresh token is unspent, unrevoked and unexpired at
   * `now`, most recently refreshed first, at most `limit`.
   */
  listActiveSignIns(userId: string, now: number, limit: number): Promise<TokenSignIn[]>;
  /** Whether this family is one of the user's sign-ins that `listActiveSignIns` would list at `now`. */
  isActiveSignIn(userId: string, familyId: string, now: number): Promise<boolean>;
  isJtiDenied(jti: string): Promise<boolean>;
}

export interface SessionRecord {
  id: string;
  /** SHA-256 of the cookie value. */
  digest: Buffer;
  userId: string;
  createdAt: number;
  lastSeenAt: number;
  /** Absolute end. */
  expiresAt: number;
  /** Idle end: moved forward as the session is used, never past expiresAt. */
  idleExpiresAt: number;
  revokedAt: number | null;
  ip: string | null;
  userAgent: string | null;
}

export interface SessionRepository {
  /** Inserts the session and, in the same transaction, revokes `replaces` (sign-in renewal). */
  insert(record: SessionRecord, replaces: Buffer | null, audit: AuditEventInput | null): Promise<void>;
  findByDigest(digest: Buffer): Promise<SessionRecord | null>;
  /** Records use: lastSeenAt and the idle end move forward. */
  touch(id: string, at: number, idleExpiresAt: number): Promise<void>;
  /** Active sessions of one user, newest first. */
  listForUser(userId: string, now: number): Promise<SessionRecord[]>;
  /** Revokes one session of the user. False when there is no such active session. */
  revoke(userId: string, id: string, at: number, audit: AuditEventInput | null): Promise<boolean>;
  /** Revokes every session of the user (and their refresh token families); returns how many sessions. */
  revokeAllForUser(userId: string, at: number, audit: AuditEventInput | null): Promise<number>;
}

/**
 * What housekeeping purges. Each call deletes one bounded batch in its own short
 * transaction, so purging never holds a long lock; the housekeeper loops.
 *
 * - `ended_keys`, `usage`, `usage_hours`, `audit`: rows older than their retention.
 * - `refresh_tokens`: tokens whose family ended before `before` (`familyExpiresAt`).
 * - `legacy_token_digests`: digests of tokens from before migration 5 whose token is gone
 *   (pruned, or its user deleted); `before` is not used.
 * - `denied_access_tokens`: denylist entries of access tokens expired before `before`.
 * - `sessions`: sessions past their absolute or idle end at `before`.
 */
export type PurgeTarget =
  | "ended_keys"
  | "usage"
  | "usage_hours"
  | "audit"
  | "refresh_tokens"
  | "legacy_token_digests"
  | "denied_access_tokens"
  | "sessions";

export interface HousekeepingRepository {
  /** Deletes up to `limit` rows of `target` older than `before` (ms); returns how many. */
  purge(target: PurgeTarget, before: number, limit: number): Promise<number>;
}

export interface Storage {
  readonly kind: "sqlite" | "postgres";
  readonly housekeeping: HousekeepingRepository;
  readonly keys: KeyRepository;
  readonly users: UserRepository;
  readonly signingKeys: SigningKeyRepository;
  readonly tokens: TokenRepository;
  readonly sessions: SessionRepository;
  readonly audit: AuditRepository;
  readonly usage: UsageRepository;
  readonly meta: MetaRepository;
  /** Cheap liveness probe for /readyz. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
