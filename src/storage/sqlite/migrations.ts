import type { SqliteDatabase } from "./database.ts";

/**
 * Versioned, forward-only migrations. Each runs once, in its own transaction, and the
 * version is recorded in the same transaction, so a crash never leaves half a schema.
 * Never edit a released migration: add a new one.
 */
export const SQLITE_MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  {
    version: 1,
    name: "api keys, audit log, usage, meta",
    sql: `
      CREATE TABLE api_keys (
        digest BLOB PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        hint TEXT NOT NULL,
        scopes TEXT NOT NULL,
        permissions TEXT NOT NULL,
        owner_id TEXT,
        metadata TEXT,
        rate_limit INTEGER,
        rate_window_seconds INTEGER,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        revoked_at INTEGER,
        revoked_reason TEXT,
        replaced_by TEXT,
        rotated_from TEXT,
        last_used_at INTEGER
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX api_keys_owner ON api_keys (owner_id, id);
      CREATE INDEX api_keys_expires ON api_keys (expires_at);
      CREATE INDEX api_keys_revoked ON api_keys (revoked_at);

      CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        detail TEXT
      ) STRICT;
      CREATE INDEX audit_events_at ON audit_events (at);
      CREATE INDEX audit_events_action ON audit_events (action, id);
      CREATE INDEX audit_events_actor ON audit_events (actor, id);
      CREATE INDEX audit_events_target ON audit_events (target_id, id);
      CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
      BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

      CREATE TABLE key_usage (
        key_id TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, bucket, outcome)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX key_usage_bucket ON key_usage (bucket);

      CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 2,
    name: "users, sessions, signing keys, refresh tokens, access token denylist",
    sql: `
      CREATE TABLE users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        disabled_at INTEGER,
        password_changed_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
        public_jwk TEXT NOT NULL,
        sealed_private_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        activated_at INTEGER,
        retired_at INTEGER,
        publish_until INTEGER
      ) STRICT, WITHOUT ROWID;
      -- At most one current and one next key, whatever the application does.
      CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state IN ('current', 'next');

      CREATE TABLE refresh_tokens (
        digest BLOB PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        family_expires_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        replaced_by TEXT,
        revoked_at INTEGER
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
      CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
      CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);

      CREATE TABLE denied_access_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      CREATE TABLE sessions (
        digest BLOB PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at INTEGER NOT NULL,
        last_seen_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        idle_expires_at INTEGER NOT NULL,
        revoked_at INTEGER,
        ip TEXT,
        user_agent TEXT
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX sessions_user ON sessions (user_id, id);
    `,
  },
  {
    version: 3,
    name: "key change log",
    // Every change to a column that verification reads is logged by trigger, in the same
    // transaction as the change, so a process holding keys in memory (keys/key-index.ts)
    // can follow changes made by any other connection, including the CLI. last_used_at
    // and other bookkeeping columns are left out: they change on every use.
    sql: `
      CREATE TABLE key_changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        key_id TEXT NOT NULL,
        at INTEGER NOT NULL
      ) STRICT;
      CREATE INDEX key_changes_at ON key_changes (at);
      CREATE TRIGGER api_keys_inserted AFTER INSERT ON api_keys
      BEGIN INSERT INTO key_changes (key_id, at) VALUES (NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER)); END;
      CREATE TRIGGER api_keys_changed
      AFTER UPDATE OF digest, id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at
      ON api_keys
      BEGIN INSERT INTO key_changes (key_id, at) VALUES (NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER)); END;
      CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
      BEGIN INSERT INTO key_changes (key_id, at) VALUES (OLD.id, CAST(unixepoch('subsec') * 1000 AS INTEGER)); END;
    `,
  },
  {
    version: 4,
    name: "last use kept with the usage counts",
    // A key's last use is written with its per-minute counts (one write per key and minute,
    // not two), and folded into api_keys.last_used_at when housekeeping purges the row.
    sql: `
      ALTER TABLE key_usage ADD COLUMN last_at INTEGER;
      CREATE TRIGGER key_usage_fold_last_use BEFORE DELETE ON key_usage WHEN OLD.last_at IS NOT NULL
      BEGIN
        UPDATE api_keys SET last_used_at = OLD.last_at
        WHERE id = OLD.key_id AND (last_used_at IS NULL OR last_used_at < OLD.last_at);
      END;
    `,
  },
  {
    version: 5,
    name: "refresh tokens keyed by their time-ordered id",
    // A refresh token now carries its record's id ("<id>.<secret>"), and the table is
    // keyed by that id instead of the digest: ids grow with time, so a new token is
    // written at the end of the key, where the digest put every insert on a random page
    // (measured: 157 µs of SQLite work per rotation against 26-28 µs). Tokens issued
    // before keep working until they expire: their digests move to a side table that
    // nothing new is written to.
    sql: `
      CREATE TABLE refresh_tokens_by_id (
        id TEXT PRIMARY KEY,
        digest BLOB NOT NULL,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        family_expires_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        replaced_by TEXT,
        revoked_at INTEGER
      ) STRICT, WITHOUT ROWID;
      INSERT INTO refresh_tokens_by_id (id, digest, family_id, user_id, client_id, scope, created_at,
        family_expires_at, expires_at, used_at, replaced_by, revoked_at)
      SELECT id, digest, family_id, user_id, client_id, scope, created_at, family_expires_at, expires_at,
        used_at, replaced_by, revoked_at FROM refresh_tokens;
      CREATE TABLE refresh_token_legacy_digests (
        digest BLOB PRIMARY KEY,
        id TEXT NOT NULL
      ) STRICT, WITHOUT ROWID;
      INSERT INTO refresh_token_legacy_digests (digest, id) SELECT digest, id FROM refresh_tokens;
      DROP TABLE refresh_tokens;
      ALTER TABLE refresh_tokens_by_id RENAME TO refresh_tokens;
      CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
      CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
      CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);
    `,
  },
  {
    version: 6,
    name: "usage older than a week kept per hour",
    // Minute rows older than the minute retention are summed into hour rows by
    // housekeeping (usage.rollUp): a key in steady use writes 1,440 minute rows a day,
    // 24 hour rows. The last use of a rolled-up minute is folded into api_keys by the
    // key_usage delete trigger, as when usage is purged.
    sql: `
      CREATE TABLE key_usage_hours (
        key_id TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (key_id, bucket, outcome)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX key_usage_hours_bucket ON key_usage_hours (bucket);
    `,
  },
  {
    version: 7,
    name: "indexes for purging ended sessions and denied access tokens",
    // Housekeeping deletes these in batches by their end; without an index each batch read
    // the whole table, on the event loop here. A session's idle end changes at most once a
    // minute (sessions/session-service.ts), so its index costs little to keep.
    sql: `
      CREATE INDEX sessions_expires ON sessions (expires_at);
      CREATE INDEX sessions_idle_expires ON sessions (idle_expires_at);
      CREATE INDEX denied_access_tokens_expires ON denied_access_tokens (expires_at);
    `,
  },
  {
    version: 8,
    name: "addresses a key may be used from",
    // A JSON array of addresses and CIDR ranges, or NULL for anywhere. Verification reads
    // it, so a change to it goes to the key change log like the other such columns.
    sql: `
      ALTER TABLE api_keys ADD COLUMN allowed_addresses TEXT;
      DROP TRIGGER api_keys_changed;
      CREATE TRIGGER api_keys_changed
      AFTER UPDATE OF digest, id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at,
        allowed_addresses
      ON api_keys
      BEGIN INSERT INTO key_changes (key_id, at) VALUES (NEW.id, CAST(unixepoch('subsec') * 1000 AS INTEGER)); END;
    `,
  },
];

export function migrateSqlite(database: SqliteDatabase): void {
  database.db.exec(
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT",
  );
  for (const migration of SQLITE_MIGRATIONS) {
    database.transaction(() => {
      // Checked inside the write transaction: two processes starting at once apply it once.
      const done = database.statement("SELECT 1 FROM schema_migrations WHERE version = ?").get(migration.version);
      if (done) return;
      database.db.exec(migration.sql);
      database
        .statement("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
        .run(migration.version, migration.name, Date.now());
    });
  }
}
