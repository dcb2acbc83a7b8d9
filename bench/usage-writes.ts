/**
 * `node bench/usage-writes.ts`: what writing the usage counts costs once a server has
 * been counting for a while, which the verify benchmark (a fresh store, about a minute of
 * load) does not show. The real `UsageRecorder` and `SqliteStorage` (WAL, its
 * checkpointer) on a temporary file; valid uses of BENCH_KEYS keys (default 1,000,000),
 * picked uniformly at random, at BENCH_RATE verifications a second (default 10,000) on a
 * simulated clock, for BENCH_MINUTES minutes (default 4), flushed every BENCH_FLUSH_MS
 * (a comma-separated list, default `1000,5000`; each on a fresh store).
 *
 * Prints, per simulated minute, the usage rows in the table, the rows written, and the
 * process's CPU (all threads, recording excluded) per row written and per verification.
 * Nothing waits on real time, so the figures are CPU, not throughput; compare them with
 * the verify route's CPU per request in `bench/results/latest.md`.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { newId } from "../src/lib/ids.ts";
import { SqliteStorage } from "../src/storage/sqlite/sqlite-storage.ts";
import { UsageRecorder } from "../src/usage/usage-recorder.ts";

const keyCount = Number(process.env.BENCH_KEYS ?? 1_000_000);
const rate = Number(process.env.BENCH_RATE ?? 10_000);
const minutes = Number(process.env.BENCH_MINUTES ?? 4);
const intervals = (process.env.BENCH_FLUSH_MS ?? "1000,5000").split(",").map(Number);

const MINUTE = 60_000;
const start = Date.UTC(2027, 0, 1);
const ids: string[] = [];
for (let i = 0; i < keyCount; i++) ids.push(newId("key", start - 86_400_000 + i));

const cpuMicros = (usage: NodeJS.CpuUsage) => usage.user + usage.system;

process.stdout.write(
  `usage writes: ${keyCount.toLocaleString("en")} keys, ${rate.toLocaleString("en")} verifications/s, ${minutes} simulated minutes per flush interval\n`,
);
for (const intervalMs of intervals) {
  const dir = mkdtempSync(join(tmpdir(), "gatehouse-usage-"));
  const storage = SqliteStorage.open(join(dir, "gatehouse.db"));
  const recorder = new UsageRecorder(storage, { intervalMs: 0 });
  const rowsIn = storage.database.statement("SELECT count(*) AS n FROM key_usage");
  process.stdout.write(`\nflush every ${intervalMs} ms\n`);
  process.stdout.write("minute | rows in table | rows written | µs per row | µs per verification\n");
  try {
    let now = start;
    for (let minute = 1; minute <= minutes; minute++) {
      const rowsBefore = Number(rowsIn.get()?.n ?? 0);
      let recordingMicros = 0;
      const cpuBefore = process.cpuUsage();
      let written = 0;
      const minuteEnd = now + MINUTE;
      while (now < minuteEnd) {
        // One flush interval's verifications, spread over it, then the flush.
        const uses = Math.round((rate * intervalMs) / 1000);
        const recordingBefore = process.threadCpuUsage();
        for (let i = 0; i < uses; i++) {
          recorder.record(
            ids[Math.floor(Math.random() * keyCount)] as string,
            "VALID",
            now + Math.floor((i * intervalMs) / uses),
          );
        }
        recordingMicros += cpuMicros(process.threadCpuUsage(recordingBefore));
        now += intervalMs;
        const changesBefore = storage.database.backgroundChanges;
        await recorder.flush();
        written += storage.database.backgroundChanges - changesBefore;
      }
      const micros = cpuMicros(process.cpuUsage(cpuBefore)) - recordingMicros;
      const rowsAfter = Number(rowsIn.get()?.n ?? 0);
      process.stdout.write(
        `${minute} | ${rowsAfter.toLocaleString("en")} (+${(rowsAfter - rowsBefore).toLocaleString("en")}) | ${written.toLocaleString("en")} | ${(micros / written).toFixed(1)} | ${(micros / (rate * 60)).toFixed(1)}\n`,
      );
    }
  } finally {
    await recorder.stop();
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
