import type { DestinationStream } from "pino";

/** Log bytes held while stdout's reader takes none; past this, new lines are dropped. */
const MAX_BUFFERED_BYTES = 8 * 1024 * 1024;

/**
 * Standard output for the server's log, through Node's own stdout stream with a bound on
 * what it holds. pino's default (sonic-boom, synchronous) retried a write for ever while
 * the reader of stdout (a log shipper, a `| head`) took nothing: every request then waited
 * on the log, the server stopped answering, and a shutdown hung with its port closed. In
 * the background on libuv's pool the write blocked a pool thread, and exit then waited
 * for that thread for ever. Node's stdout writes a pipe or socket without blocking and
 * holds what the reader has not taken; past 8 MiB held, lines are dropped: a stalled
 * reader costs log lines, never the service (the audit trail is in the database).
 */
export function stdoutLog(): DestinationStream {
  return {
    write(line: string) {
      if (process.stdout.writableLength > MAX_BUFFERED_BYTES) return;
      process.stdout.write(line);
    },
  };
}

/**
 * Before the process exits (which drops what stdout still holds): waits up to `withinMs`
 * for the reader to take the last lines.
 */
export async function settleLog(withinMs = 2000): Promise<void> {
  if (process.stdout.writableLength === 0) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      process.stdout.off("drain", done);
      resolve();
    };
    const timer = setTimeout(done, withinMs);
    process.stdout.on("drain", done);
  });
}
