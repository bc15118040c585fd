// The request-latency histogram, kept by hand for the per-request path and exported through prom-client.
//
// prom-client's Histogram.observe validates and hashes its labels object on every call: 2-3 % of a
// leader's CPU under lease reads. Here a request costs a string key, one Map lookup and a bucket scan;
// prom-client still formats and serves the result (this object is registered as a metric of its own),
// and the exposition is the same as a prom-client Histogram's (request-histogram.test.ts checks it).

import type { Registry } from "prom-client";

interface Series {
  readonly op: string;
  readonly code: string;
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum: number;
  count: number;
}

interface ValuePair {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  readonly metricName: string;
}

export class RequestHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly series = new Map<string, Series>();

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    // Registry.registerMetric needs only what get() and reset() give; prom-client's own types ask for
    // the whole Metric class.
    registry.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
  }

  observe(op: string, code: string, seconds: number): void {
    const key = `${op} ${code}`;
    let s = this.series.get(key);
    if (s === undefined) {
      s = { op, code, counts: new Float64Array(this.buckets.length + 1), sum: 0, count: 0 };
      this.series.set(key, s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += seconds;
    s.count++;
  }

  /** What prom-client's registry formats (the shape of its Histogram's get()). */
  get(): { name: string; help: string; type: string; aggregator: string; values: ValuePair[] } {
    const values: ValuePair[] = [];
    for (const s of this.series.values()) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i]!;
        const le = i < this.buckets.length ? this.buckets[i]! : "+Inf";
        values.push({
          labels: { le, op: s.op, code: s.code },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      }
      values.push({ labels: { op: s.op, code: s.code }, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels: { op: s.op, code: s.code }, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.series.clear();
  }
}
