// Request rates and latency percentiles over a recent window, from the cumulative histograms the node
// already exports on /metrics (raftkv_request_duration_seconds, raftkv_wal_fsync_duration_seconds): the
// dashboard keeps a few samples of them and differences the newest against one a few seconds older.

/** One histogram series' cumulative state at one moment: bucket upper bounds (seconds, +Inf last). */
export interface SeriesSample {
  readonly bounds: readonly number[];
  /** Cumulative counts per bound, as Prometheus keeps them. */
  readonly cumulative: readonly number[];
  readonly count: number;
  readonly sum: number;
}

/** What the page shows for one operation over the window. */
export interface WindowStats {
  /** Observations since the node started. */
  readonly total: number;
  readonly count: number;
  readonly perSecond: number;
  /** Estimated within the bucket, as Prometheus' histogram_quantile does; null without observations. */
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
  readonly meanMs: number | null;
}

interface ValuePair {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
  readonly metricName?: string;
}

/**
 * Groups a prom-client histogram's values (Metric.get().values) into series by one label (`op`),
 * adding up the series that differ in other labels (the outcome code).
 */
export function seriesByLabel(
  name: string,
  values: readonly ValuePair[],
  label: string,
): Map<string, SeriesSample> {
  const acc = new Map<string, { buckets: Map<number, number>; count: number; sum: number }>();
  for (const v of values) {
    const key = String(v.labels[label] ?? "");
    let a = acc.get(key);
    if (a === undefined) acc.set(key, (a = { buckets: new Map(), count: 0, sum: 0 }));
    if (v.metricName === `${name}_bucket`) {
      const le = v.labels["le"];
      const bound = le === "+Inf" ? Number.POSITIVE_INFINITY : Number(le);
      a.buckets.set(bound, (a.buckets.get(bound) ?? 0) + v.value);
    } else if (v.metricName === `${name}_count`) a.count += v.value;
    else if (v.metricName === `${name}_sum`) a.sum += v.value;
  }
  const out = new Map<string, SeriesSample>();
  for (const [key, a] of acc) {
    const bounds = [...a.buckets.keys()].sort((x, y) => x - y);
    out.set(key, {
      bounds,
      cumulative: bounds.map((b) => a.buckets.get(b) ?? 0),
      count: a.count,
      sum: a.sum,
    });
  }
  return out;
}

/** Rates and percentiles of what was observed between `older` (null: since start) and `newer`. */
export function windowStats(older: SeriesSample | null, newer: SeriesSample, seconds: number): WindowStats {
  const count = newer.count - (older?.count ?? 0);
  const perSecond = seconds > 0 ? count / seconds : 0;
  if (count <= 0)
    return { total: newer.count, count: 0, perSecond: 0, p50Ms: null, p99Ms: null, meanMs: null };
  const sameBounds = older !== null && older.bounds.length === newer.bounds.length;
  const cumulative = newer.cumulative.map((c, i) => c - (sameBounds ? (older.cumulative[i] ?? 0) : 0));
  const sum = newer.sum - (older?.sum ?? 0);
  return {
    total: newer.count,
    count,
    perSecond,
    p50Ms: quantileMs(0.5, newer.bounds, cumulative),
    p99Ms: quantileMs(0.99, newer.bounds, cumulative),
    meanMs: (sum / count) * 1000,
  };
}

/** The q-quantile in ms, interpolated linearly inside its bucket; in the +Inf bucket, the last bound. */
export function quantileMs(
  q: number,
  bounds: readonly number[],
  cumulative: readonly number[],
): number | null {
  const total = cumulative[cumulative.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  for (let i = 0; i < bounds.length; i++) {
    const upTo = cumulative[i]!;
    if (upTo < rank) continue;
    const upper = bounds[i]!;
    const lower = i === 0 ? 0 : bounds[i - 1]!;
    if (!Number.isFinite(upper)) return lower * 1000;
    const before = i === 0 ? 0 : cumulative[i - 1]!;
    const inBucket = upTo - before;
    const at = inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - before)) / inBucket;
    return at * 1000;
  }
  return (bounds[bounds.length - 2] ?? 0) * 1000;
}
