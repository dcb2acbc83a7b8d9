/**
 * Paired rounds: a reference and a subject measured back to back, several times, so each
 * pair ran under the same background load; per-server figures are the median round and
 * ratios the median of the per-round ratios (the machine may be shared and noisy).
 */
import { type LoadOptions, type Measurement, measure, type Template } from "./load.ts";

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** Per-server figures: the median round (robust to a burst of load from elsewhere). */
export function typical(items: Measurement[]): Measurement {
  const mid = (pick: (m: Measurement) => number) => median(items.map(pick));
  return {
    requestsPerSecond: mid((m) => m.requestsPerSecond),
    p50Ms: mid((m) => m.p50Ms),
    p99Ms: mid((m) => m.p99Ms),
    meanMs: mid((m) => m.meanMs),
    requests: items.reduce((sum, m) => sum + m.requests, 0),
    non2xx: items.reduce((sum, m) => sum + m.non2xx, 0),
    errors: items.reduce((sum, m) => sum + m.errors, 0),
    timeouts: items.reduce((sum, m) => sum + m.timeouts, 0),
    serverCpu: items.every((m) => m.serverCpu !== null) ? mid((m) => m.serverCpu ?? 0) : null,
    loadgenCpu: mid((m) => m.loadgenCpu),
    cpuMicrosPerRequest: items.every((m) => m.cpuMicrosPerRequest !== null)
      ? mid((m) => m.cpuMicrosPerRequest ?? 0)
      : null,
  };
}

export interface Ratio {
  requestsPerSecond: number;
  p50: number;
  p99: number;
  /** Reference CPU µs/req ÷ subject CPU µs/req: the throughput ratio with a core each. */
  cpuNormalised: number | null;
}

/** Subject / reference, round by round, then the median. */
export function pairedRatios(reference: Measurement[], subject: Measurement[]): Ratio {
  const ratio = (pick: (m: Measurement) => number) =>
    median(subject.map((s, i) => pick(s) / pick(reference[i] as Measurement)));
  const cpu = subject.every((m, i) => m.cpuMicrosPerRequest !== null && reference[i]?.cpuMicrosPerRequest != null);
  return {
    requestsPerSecond: ratio((m) => m.requestsPerSecond),
    p50: ratio((m) => m.p50Ms),
    p99: ratio((m) => m.p99Ms),
    cpuNormalised: cpu ? 1 / ratio((m) => m.cpuMicrosPerRequest ?? 0) : null,
  };
}

/** Ratio of two typical figures measured in different parts of the run (not paired). */
export function unpairedRatio(reference: Measurement, subject: Measurement): Ratio {
  return {
    requestsPerSecond: subject.requestsPerSecond / reference.requestsPerSecond,
    p50: subject.p50Ms / reference.p50Ms,
    p99: subject.p99Ms / reference.p99Ms,
    cpuNormalised:
      subject.cpuMicrosPerRequest && reference.cpuMicrosPerRequest
        ? reference.cpuMicrosPerRequest / subject.cpuMicrosPerRequest
        : null,
  };
}

export interface Side {
  target: { url: string; pid: number };
  template: Template;
}

export interface PairedResult {
  reference: Measurement;
  subject: Measurement;
  ratio: Ratio;
  rounds: { reference: Measurement[]; subject: Measurement[] };
}

export async function pairedRounds(
  sides: { reference: Side; subject: Side },
  settings: {
    load: LoadOptions;
    rounds: number;
    warmupSeconds: number;
    label: string;
    log: (line: string) => void;
    /** Runs before every measurement of the subject (e.g. top up a pool of one-use tokens). */
    beforeSubject?: () => Promise<void>;
  },
): Promise<PairedResult> {
  const before = settings.beforeSubject ?? (async () => {});
  const { reference, subject } = sides;
  const warm = { ...settings.load, durationSeconds: settings.warmupSeconds };
  await measure(reference.target, reference.template, warm);
  await before();
  await measure(subject.target, subject.template, warm);
  const rounds = { reference: [] as Measurement[], subject: [] as Measurement[] };
  for (let round = 1; round <= settings.rounds; round++) {
    const r = await measure(reference.target, reference.template, settings.load);
    await before();
    const s = await measure(subject.target, subject.template, settings.load);
    rounds.reference.push(r);
    rounds.subject.push(s);
    settings.log(
      `  ${settings.label} round ${round}: reference ${r.requestsPerSecond.toFixed(0)} req/s ${r.cpuMicrosPerRequest?.toFixed(0)} µs/req, subject ${s.requestsPerSecond.toFixed(0)} req/s ${s.cpuMicrosPerRequest?.toFixed(0)} µs/req, non-2xx ${s.non2xx + s.errors}`,
    );
  }
  return {
    reference: typical(rounds.reference),
    subject: typical(rounds.subject),
    ratio: pairedRatios(rounds.reference, rounds.subject),
    rounds,
  };
}
