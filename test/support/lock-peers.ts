import pg from "pg";
import { TEST_DATABASE_URL } from "./backends.ts";

/**
 * Two plain connections for PostgreSQL tests that make a race or a deadlock happen every
 * time rather than by timing: the locker holds row locks in a transaction of the test's
 * making, and the watcher sees who waits for whom (pg_blocking_pids).
 */
export interface LockPeers {
  locker: pg.Client;
  lockerPid: number;
  watcher: pg.Client;
  /** Polls until a backend other than `known` waits on one of `pids`; returns its pid. */
  newWaiter(pids: number[], known?: number[]): Promise<number>;
  end(): Promise<void>;
}

/** `settings`: more `-c name=value` options for the locker's session. */
export async function lockPeers(schema: string, settings = ""): Promise<LockPeers> {
  const locker = new pg.Client({
    connectionString: TEST_DATABASE_URL,
    options: `-c search_path=${schema} ${settings}`.trim(),
  });
  const watcher = new pg.Client({ connectionString: TEST_DATABASE_URL });
  await Promise.all([locker.connect(), watcher.connect()]);
  const lockerPid = (await locker.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid ?? 0;
  return {
    locker,
    lockerPid,
    watcher,
    async newWaiter(pids, known = []) {
      for (;;) {
        const { rows } = await watcher.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && $1::int[] AND NOT pid = ANY($1::int[])",
          [pids],
        );
        const found = rows.map((row) => row.pid).find((pid) => !known.includes(pid));
        if (found !== undefined) return found;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async end() {
      await Promise.all([locker.end(), watcher.end()]);
    },
  };
}
