/**
 * Completions per second of `work` with `concurrency` calls in flight for `seconds`: what
 * a pool of that many threads can do (the argon2id and signing limits).
 */
export async function completionsPerSecond(
  concurrency: number,
  seconds: number,
  work: () => Promise<unknown>,
): Promise<number> {
  let done = 0;
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await work();
        done++;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}
