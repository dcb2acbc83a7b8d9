import type { Counter, LabelValues } from "prom-client";

/** One labelled series of a tally: the hot path adds to `pending`, nothing else. */
export interface TallySeries {
  pending: number;
}

/**
 * Counts for a prom-client Counter, kept in plain numbers where they happen and handed
 * to the counter when it is scraped (call `drainInto` from the counter's `collect`).
 *
 * Why: a labelled prom-client `inc` rebuilds and hashes its label set on every call, and
 * the busiest routes (key verification) paid that two times a request. Here a request
 * adds one to a number in an object found once per label set. The scrape sees the same
 * totals: nothing is dropped, only handed over later.
 */
export class CounterTally<T extends string> {
  private readonly series = new Map<string, TallySeries & { labels: LabelValues<T> }>();

  /** The series of a label set; `name` must identify the label set (it is the map key). */
  seriesFor(name: string, labels: () => LabelValues<T>): TallySeries {
    let series = this.series.get(name);
    if (series === undefined) {
      series = { labels: labels(), pending: 0 };
      this.series.set(name, series);
    }
    return series;
  }

  drainInto(counter: Counter<T>): void {
    for (const series of this.series.values()) {
      if (series.pending === 0) continue;
      counter.inc(series.labels, series.pending);
      series.pending = 0;
    }
  }
}
