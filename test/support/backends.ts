import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStorage } from "../../src/storage/sqlite/sqlite-storage.ts";
import type { Storage } from "../../src/storage/types.ts";

/** A fresh, empty store; `dispose` closes it and removes what it created. */
export interface TestStore {
  storage: Storage;
  dispose(): Promise<void>;
}

export interface Backend {
  name: "sqlite" | "postgres";
  create(): Promise<TestStore>;
}

export function tempDir(prefix = "gatehouse-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

const sqlite: Backend = {
  name: "sqlite",
  async create() {
    const dir = tempDir();
    const storage = SqliteStorage.open(join(dir, "gatehouse.db"));
    return {
      storage,
      async dispose() {
        await storage.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
};

/**
 * Every backend the suites run on. GATEHOUSE_TEST_BACKENDS narrows it (e.g. "sqlite")
 * for a quick local run; CI runs them all.
 */
export function backends(): Backend[] {
  const all: Backend[] = [sqlite];
  const wanted = process.env.GATEHOUSE_TEST_BACKENDS?.split(",").map((s) => s.trim());
  return wanted ? all.filter((b) => wanted.includes(b.name)) : all;
}
