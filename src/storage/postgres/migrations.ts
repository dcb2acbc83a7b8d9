import type { PostgresDatabase, Queryable } from "./database.ts";

export interface PostgresMigration {
  version: number;
  name: string;
  sql: string;
}

/**
 * Versioned, forward-only migrations, the same history as sqlite/migrations.ts. Nodes
 * starting together take a transaction-scoped advisory lock, so exactly one applies
 * each migration and the others wait, then see it recorded.
 */
export const POSTGRES_MIGRATIONS: readonly PostgresMigration[] = [
  {
    version: 1,
    name: "api keys, audit log, usage, meta",
    sql: `
      CREATE TABLE api_keys (
        digest BYTEA PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        hint TEXT NOT NULL,
        scopes JSONB NOT NULL,
        permissions JSONB NOT NULL,
        owner_id TEXT,
        metadata JSONB,
        rate_limit BIGINT,
        rate_window_seconds BIGINT,
        created_at BIGINT NOT NULL,
        expires_at BIGINT,
        revoked_at BIGINT,
        revoked_reason TEXT,
        replaced_by TEXT,
        rotated_from TEXT,
        last_used_at BIGINT
      );
      CREATE INDEX api_keys_owner ON api_keys (owner_id, id);
      CREATE INDEX api_keys_expires ON api_keys (expires_at);
      CREATE INDEX api_keys_revoked ON api_keys (revoked_at);

      CREATE TABLE audit_events (
        id BIGSERIAL PRIMARY KEY,
        at BIGINT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target_type TEXT,
        target_id TEXT,
        outcome TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
        ip TEXT,
        user_agent TEXT,
        request_id TEXT,
        detail JSONB
      );
      CREATE INDEX audit_events_at ON audit_events (at);
      CREATE INDEX audit_events_action ON audit_events (action, id);
      CREATE INDEX audit_events_actor ON audit_events (actor, id);
      CREATE INDEX audit_events_target ON audit_events (target_id, id);
      CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'audit events are append-only'; END $$;
      CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

      CREATE TABLE key_usage (
        key_id TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (key_id, bucket, outcome)
      );
      CREATE INDEX key_usage_bucket ON key_usage (bucket);

      CREATE TABLE meta (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      );
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
        scopes JSONB NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        disabled_at BIGINT,
        password_changed_at BIGINT NOT NULL
      );

      CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('next', 'current', 'retired')),
        public_jwk TEXT NOT NULL,
        sealed_private_key BYTEA NOT NULL,
        created_at BIGINT NOT NULL,
        activated_at BIGINT,
        retired_at BIGINT,
        publish_until BIGINT
      );
      -- At most one current and one next key, whatever the application does.
      CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state IN ('current', 'next');

      CREATE TABLE refresh_tokens (
        digest BYTEA PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        family_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        family_expires_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT,
        replaced_by TEXT,
        revoked_at BIGINT
      );
      CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
      CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
      CREATE INDEX refresh_tokens_expiry ON refresh_tokens (family_expires_at);

      CREATE TABLE denied_access_tokens (
        jti TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL
      );

      CREATE TABLE sessions (
        digest BYTEA PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        idle_expires_at BIGINT NOT NULL,
        revoked_at BIGINT,
        ip TEXT,
        user_agent TEXT
      );
      CREATE INDEX sessions_user ON sessions (user_id, id);
    `,
  },
  {
    version: 3,
    name: "key change log",
    // See sqlite/migrations.ts: changes to what verification reads, logged by trigger in
    // the changing transaction.
    sql: `
      CREATE TABLE key_changes (
        seq BIGSERIAL PRIMARY KEY,
        key_id TEXT NOT NULL,
        at BIGINT NOT NULL
      );
      CREATE INDEX key_changes_at ON key_changes (at);
      CREATE FUNCTION api_keys_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        INSERT INTO key_changes (key_id, at)
        VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END,
                (extract(epoch FROM clock_timestamp()) * 1000)::bigint);
        RETURN NULL;
      END $$;
      CREATE TRIGGER api_keys_changed
        AFTER INSERT OR DELETE
           OR UPDATE OF digest, id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at
        ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_log_change();
    `,
  },
  {
    version: 4,
    name: "last use kept with the usage counts",
    // See sqlite/migrations.ts.
    sql: `
      ALTER TABLE key_usage ADD COLUMN last_at BIGINT;
      CREATE FUNCTION key_usage_fold_last_use() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF OLD.last_at IS NOT NULL THEN
          UPDATE api_keys SET last_used_at = OLD.last_at
          WHERE id = OLD.key_id AND (last_used_at IS NULL OR last_used_at < OLD.last_at);
        END IF;
        RETURN OLD;
      END $$;
      CREATE TRIGGER key_usage_fold_last_use BEFORE DELETE ON key_usage
        FOR EACH ROW EXECUTE FUNCTION key_usage_fold_last_use();
    `,
  },
  {
    version: 5,
    name: "refresh tokens keyed by their time-ordered id",
    // See sqlite/migrations.ts: the primary key's B-tree now grows at its end.
    sql: `
      CREATE TABLE refresh_token_legacy_digests (
        digest BYTEA PRIMARY KEY,
        id TEXT NOT NULL
      );
      INSERT INTO refresh_token_legacy_digests (digest, id) SELECT digest, id FROM refresh_tokens;
      ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_pkey;
      ALTER TABLE refresh_tokens DROP CONSTRAINT refresh_tokens_id_key;
      ALTER TABLE refresh_tokens ADD PRIMARY KEY (id);
    `,
  },
  {
    version: 6,
    name: "usage older than a week kept per hour",
    // See sqlite/migrations.ts.
    sql: `
      CREATE TABLE key_usage_hours (
        key_id TEXT NOT NULL,
        bucket BIGINT NOT NULL,
        outcome TEXT NOT NULL,
        count BIGINT NOT NULL,
        PRIMARY KEY (key_id, bucket, outcome)
      );
      CREATE INDEX key_usage_hours_bucket ON key_usage_hours (bucket);
    `,
  },
  {
    version: 7,
    name: "indexes for purging ended sessions and denied access tokens",
    // See sqlite/migrations.ts. Not CONCURRENTLY: a migration runs in a transaction, and
    // both tables hold only live sessions and tokens (pruned hourly), so the build is short.
    sql: `
      CREATE INDEX sessions_expires ON sessions (expires_at);
      CREATE INDEX sessions_idle_expires ON sessions (idle_expires_at);
      CREATE INDEX denied_access_tokens_expires ON denied_access_tokens (expires_at);
    `,
  },
  {
    version: 8,
    name: "addresses a key may be used from",
    // See sqlite/migrations.ts. Adding a nullable column without a default rewrites nothing.
    sql: `
      ALTER TABLE api_keys ADD COLUMN allowed_addresses JSONB;
      DROP TRIGGER api_keys_changed ON api_keys;
      CREATE TRIGGER api_keys_changed
        AFTER INSERT OR DELETE
           OR UPDATE OF digest, id, scopes, permissions, owner_id, rate_limit, rate_window_seconds, expires_at, revoked_at,
                        allowed_addresses
        ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_log_change();
    `,
  },
];

/** The advisory lock migrations run under (exported for tests that hold it). */
export const MIGRATION_LOCK_ID = 0x6761_7465; // "gate"

async function inTransaction<T>(client: Queryable, work: () => Promise<T>): Promise<T> {
  await client.query("BEGIN");
  try {
    const result = await work();
    await client.query("COMMIT");
    return result;
  } catch (error) {
    await client.query("ROLLBACK").catch(() => {});
    throw error;
  }
}

/**
 * Applies pending migrations, each in its own transaction (as SQLite does), each under
 * the advisory lock and checked again once it is held, so of nodes starting together one
 * applies it and the others wait for it. A migration that fails leaves those before it
 * committed: the next start resumes there instead of redoing a long one.
 *
 * On a connection without the request timeouts (PostgresDatabase.unhurried): migration 5
 * copies every refresh token, and the nodes waiting for the lock wait as long.
 * `migrations` is for tests.
 */
export async function migratePostgres(
  database: PostgresDatabase,
  options: { migrations?: readonly PostgresMigration[] } = {},
): Promise<void> {
  const migrations = options.migrations ?? POSTGRES_MIGRATIONS;
  await database.unhurried(async (client) => {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${database.schema}`).catch((error: unknown) => {
      // Two nodes creating the schema at once: one wins, the other sees a duplicate.
      const code = (error as { code?: string }).code;
      if (code !== "23505" && code !== "42P06") throw error;
    });
    const isApplied = async (version: number) =>
      (await client.query("SELECT 1 FROM schema_migrations WHERE version = $1", [version])).rows.length > 0;
    const applied = await inTransaction(client, async () => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_ID]);
      await client.query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
      );
      const { rows } = await client.query<{ version: number }>("SELECT version FROM schema_migrations");
      return new Set(rows.map((row) => row.version));
    });
    for (const migration of migrations) {
      if (applied.has(migration.version)) continue;
      await inTransaction(client, async () => {
        await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK_ID]);
        // Another node may have applied it while this one waited for the lock.
        if (await isApplied(migration.version)) return;
        await client.query(migration.sql);
        await client.query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)", [
          migration.version,
          migration.name,
          Date.now(),
        ]);
      });
    }
  });
}
