/**
 * Revocations racing a refresh, on PostgreSQL (SQLite runs every write on one connection,
 * synchronously, so nothing can interleave there). A refresh that has already locked its
 * token when a revocation of the same family or user starts commits the token's
 * successor after the revocation's statement took its snapshot: under READ COMMITTED
 * that statement never sees the successor. These tests make that interleaving happen
 * every time, with a real row lock held by a third connection, and check that the
 * successor dies with its family anyway.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import type { PostgresStorage } from "../../src/storage/postgres/postgres-storage.ts";
import { refreshTokenRef } from "../../src/tokens/opaque-token.ts";
import { backends, TEST_DATABASE_URL } from "../support/backends.ts";
import type { TestServer } from "../support/server.ts";
import { createUser, login, me, STRONG_PASSWORD, startAuthServer } from "./support.ts";

const postgres = backends().find((backend) => backend.name === "postgres");

const refresh = (server: TestServer, token: string) =>
  server.call("POST", "/auth/refresh", { refresh_token: token }, { key: null });

describe("revocations racing a refresh (postgres)", { skip: postgres === undefined }, () => {
  let server: TestServer;
  /** Holds a token's row lock in an open transaction. */
  let locker: pg.Client;
  let lockerPid: number;
  /**
   * Looks at who waits for whom. Not the locker: inside its transaction, pg_stat_activity
   * would answer from the snapshot taken at its first read.
   */
  let watcher: pg.Client;

  before(async () => {
    if (!postgres) return;
    server = await startAuthServer(postgres);
    const schema = (server.gatehouse.storage as PostgresStorage).database.schema;
    locker = new pg.Client({ connectionString: TEST_DATABASE_URL, options: `-c search_path=${schema}` });
    watcher = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await Promise.all([locker.connect(), watcher.connect()]);
    lockerPid = (await locker.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0]?.pid ?? 0;
  });
  after(async () => {
    await Promise.all([locker?.end(), watcher?.end()]);
    await server?.close();
  });

  /** Backends waiting, directly or not, on one of `pids` (the pids themselves left out). */
  async function waitersOn(pids: number[]): Promise<number[]> {
    const { rows } = await watcher.query<{ pid: number }>(
      "SELECT pid FROM pg_stat_activity WHERE pg_blocking_pids(pid) && $1::int[] AND NOT pid = ANY($1::int[])",
      [pids],
    );
    return rows.map((row) => row.pid);
  }

  /** Polls until a backend other than `known` waits on one of `pids`; returns its pid. */
  async function newWaiter(pids: number[], known: number[] = []): Promise<number> {
    for (;;) {
      const found = (await waitersOn(pids)).find((pid) => !known.includes(pid));
      if (found !== undefined) return found;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * Runs `refreshing` (which rotates the token `tokenId`) and `revoking` so that the
   * rotation holds the token's row when the revocation's statement starts: a third
   * connection locks the row, the rotation queues on it, then the revocation queues
   * behind the rotation, and the lock is released.
   */
  async function interleave<A, B>(
    tokenId: string,
    refreshing: () => Promise<A>,
    revoking: () => Promise<B>,
  ): Promise<[A, B]> {
    await locker.query("BEGIN");
    await locker.query("SELECT 1 FROM refresh_tokens WHERE id = $1 FOR UPDATE", [tokenId]);
    const rotation = refreshing();
    const rotationPid = await newWaiter([lockerPid]);
    const revocation = revoking();
    await newWaiter([lockerPid, rotationPid], [rotationPid]);
    await locker.query("COMMIT");
    return Promise.all([rotation, revocation]);
  }

  const idOf = (refreshToken: string) => refreshTokenRef(refreshToken)?.id ?? assert.fail("not a refresh token");

  test("a spent token replayed while the thief refreshes: the thief's new token dies with the family", async () => {
    const user = await createUser(server);
    const first = await login(server, user);
    const second = (await refresh(server, first.refresh_token)).body;
    // The thief rotates `second`; the victim presents `first` (spent): reuse, family revoked.
    const [thief, victim] = await interleave(
      idOf(second.refresh_token),
      () => refresh(server, second.refresh_token),
      () => refresh(server, first.refresh_token),
    );
    assert.equal(victim.status, 400);
    assert.equal(thief.status, 200, "the rotation committed first");
    assert.equal((await refresh(server, thief.body.refresh_token)).status, 400, "the thief's successor is revoked");
  });

  test("a logout racing a refresh of the same sign-in: the refresh's new token is revoked too", async () => {
    const user = await createUser(server);
    const tokens = await login(server, user);
    const [rotated, logout] = await interleave(
      idOf(tokens.refresh_token),
      () => refresh(server, tokens.refresh_token),
      () => server.call("POST", "/auth/logout", undefined, { key: tokens.access_token }),
    );
    assert.equal(logout.status, 204);
    assert.equal(rotated.status, 200);
    assert.equal((await refresh(server, rotated.body.refresh_token)).status, 400);
    assert.equal((await me(server, rotated.body.access_token)).status, 401);
  });

  test("a password change racing a refresh of another sign-in: that sign-in ends all the same", async () => {
    const user = await createUser(server);
    const stolen = await login(server, user);
    const owner = await login(server, user);
    const [rotated, changed] = await interleave(
      idOf(stolen.refresh_token),
      () => refresh(server, stolen.refresh_token),
      () =>
        server.call(
          "POST",
          "/auth/password",
          { currentPassword: STRONG_PASSWORD, newPassword: "quartz lantern meadow ferry" },
          { key: owner.access_token },
        ),
    );
    assert.equal(changed.status, 204);
    assert.equal(rotated.status, 200);
    assert.equal((await refresh(server, rotated.body.refresh_token)).status, 400, "the other sign-in is ended");
    assert.equal((await refresh(server, owner.refresh_token)).status, 200, "the owner's own sign-in is kept");
  });

  test("disabling a user racing a refresh: once enabled again, nothing from before comes back", async () => {
    const user = await createUser(server);
    const tokens = await login(server, user);
    const [rotated, disabled] = await interleave(
      idOf(tokens.refresh_token),
      () => refresh(server, tokens.refresh_token),
      () => server.call("POST", `/v1/users/${user.id}/disable`),
    );
    assert.equal(disabled.status, 200);
    assert.equal(rotated.status, 200);
    assert.equal((await server.call("POST", `/v1/users/${user.id}/enable`)).status, 200);
    assert.equal((await refresh(server, rotated.body.refresh_token)).status, 400);
  });
});
