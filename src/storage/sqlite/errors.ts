/**
 * SQLite's primary result codes (`errcode & 0xff`) that mean the store cannot take the
 * request now, not that the request or Gatehouse is wrong: BUSY and LOCKED (another
 * process held the write lock past the busy timeout), NOMEM, READONLY (the file or its
 * directory turned read-only), IOERR, FULL (the disk is full) and CANTOPEN. Answered as
 * 503 STORAGE_UNAVAILABLE, like PostgreSQL being away: the operator fixes the disk and
 * clients retry, and nothing was written (the transaction rolled back whole).
 */
const UNAVAILABLE = new Set([5, 6, 7, 8, 10, 13, 14]);

export function isSqliteUnavailable(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const { code, errcode } = error as { code?: unknown; errcode?: unknown };
  return code === "ERR_SQLITE_ERROR" && typeof errcode === "number" && UNAVAILABLE.has(errcode & 0xff);
}

/**
 * The store was closed under a request: the server is stopping, and a request whose client
 * went away (the server no longer waits for it) reached storage after the close. Also a
 * 503; nothing is written.
 */
export function isSqliteClosed(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return (
    (error as { code?: unknown }).code === "ERR_INVALID_STATE" &&
    /^(database is not open|statement has been finalized)$/.test(error.message)
  );
}
