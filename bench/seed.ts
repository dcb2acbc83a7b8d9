/**
 * Fills a fresh data directory with keys, straight through the storage layer (records
 * built as KeyService builds them), and keeps the plaintext keys for the load generator.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { digestKey, generateKey, keyHint } from "../src/keys/key-format.ts";
import { newId } from "../src/lib/ids.ts";
import { pooledRandomBytes } from "../src/lib/random-pool.ts";
import { PostgresStorage } from "../src/storage/postgres/postgres-storage.ts";
import { SqliteStorage } from "../src/storage/sqlite/sqlite-storage.ts";
import type { ApiKeyRecord } from "../src/storage/types.ts";

export const PREFIX = "gate";
/** Big enough never to refuse during a run, so limiting is counted but never trips. */
export const HUGE_RATE_LIMIT = { limit: 1_000_000_000, windowSeconds: 60 };
export const SEED_SCOPES = ["payments:read", "payments:write"];

export interface SeededData {
  dataDir: string;
  /** Bearer credential of the caller: holds keys:verify. */
  serviceKey: string;
  /** Plaintext of every seeded customer key. */
  keys: string[];
  seedSeconds: number;
}

function record(key: string, now: number, fields: Pick<ApiKeyRecord, "name" | "scopes" | "permissions">): ApiKeyRecord {
  return {
    ...fields,
    id: newId("key", now),
    digest: digestKey(key),
    hint: keyHint(key),
    ownerId: null,
    metadata: null,
    rateLimit: HUGE_RATE_LIMIT,
    createdAt: now,
    expiresAt: now + 30 * 86_400_000,
    revokedAt: null,
    revokedReason: null,
    replacedBy: null,
    rotatedFrom: null,
    lastUsedAt: null,
    allowedAddresses: null,
  };
}

/**
 * Plaintext keys (the load generator's) and the caller's service key. Their storage
 * records are built only while seeding (`recordsOf`): a million records hold ~1.4 GB of
 * this process's heap, and kept for a later part they slowed the load generator's garbage
 * collection enough to show in the servers' figures.
 */
export interface GeneratedKeys {
  serviceKey: string;
  keys: string[];
  generateSeconds: number;
}

export function generateKeys(count: number): GeneratedKeys {
  const started = performance.now();
  const serviceKey = generateKey(PREFIX);
  const keys: string[] = new Array(count);
  for (let i = 0; i < count; i++) keys[i] = generateKey(PREFIX, pooledRandomBytes);
  return { serviceKey, keys, generateSeconds: (performance.now() - started) / 1000 };
}

/** The keys' records: the service key first, the rest in digest order. */
function recordsOf(generated: GeneratedKeys): ApiKeyRecord[] {
  const now = Date.now();
  const records: ApiKeyRecord[] = generated.keys.map((key, i) =>
    record(key, now, { name: `bench ${i}`, scopes: SEED_SCOPES, permissions: [] }),
  );
  // In primary-key (digest) order: every commit in WAL mode ends with a checkpoint that
  // rewrites each page the batch touched, and random digests touch them all, so batches
  // in random order make seeding quadratic (and PostgreSQL's B-tree likes order too).
  records.sort((a, b) => Buffer.compare(a.digest, b.digest));
  records.unshift(
    record(generated.serviceKey, now, { name: "bench caller", scopes: [], permissions: ["keys:verify"] }),
  );
  return records;
}

export async function seed(generated: GeneratedKeys): Promise<SeededData> {
  const started = performance.now();
  const dataDir = mkdtempSync(join(tmpdir(), "gatehouse-bench-"));
  const storage = SqliteStorage.open(join(dataDir, "gatehouse.db"));
  // This connection only loads data: a cache that holds the whole table keeps the
  // inserts in memory, and a crash here loses nothing worth keeping.
  storage.database.db.exec("PRAGMA synchronous = OFF; PRAGMA cache_size = -2000000;");
  // One transaction: see recordsOf.
  await storage.keys.insertMany(recordsOf(generated));
  storage.database.db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  await storage.close();
  return {
    dataDir,
    serviceKey: generated.serviceKey,
    keys: generated.keys,
    seedSeconds: generated.generateSeconds + (performance.now() - started) / 1000,
  };
}

/**
 * The same keys into PostgreSQL, through PostgresStorage.insertMany in chunks (one
 * transaction each, so a chunk never holds the whole million in one statement list).
 */
export async function seedPostgres(url: string, generated: GeneratedKeys, chunk = 50_000): Promise<number> {
  const started = performance.now();
  const storage = await PostgresStorage.open(url);
  try {
    const records = recordsOf(generated);
    for (let i = 0; i < records.length; i += chunk) {
      await storage.keys.insertMany(records.slice(i, i + chunk));
    }
    await storage.database.query("ANALYZE api_keys");
  } finally {
    await storage.close();
  }
  return (performance.now() - started) / 1000;
}
