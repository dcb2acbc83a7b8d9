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

      CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) STRICT;
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
