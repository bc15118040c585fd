// The dashboard's rates and percentiles, computed from the same cumulative histograms /metrics exports.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { RequestHistogram } from "../../src/server/request-histogram.ts";
import { quantileMs, seriesByLabel, windowStats } from "../../src/ui/histogram-window.ts";

const BOUNDS = [0.001, 0.01, 0.1, Number.POSITIVE_INFINITY];

test("quantileMs interpolates inside the bucket, like Prometheus' histogram_quantile", () => {
  // 10 observations at or below 1 ms, 10 more in (1 ms, 10 ms].
  assert.equal(quantileMs(0.5, BOUNDS, [10, 20, 20, 20]), 1);
  const p75 = quantileMs(0.75, BOUNDS, [10, 20, 20, 20])!;
  assert.ok(Math.abs(p75 - 5.5) < 1e-9, `p75 ${p75}: half way through (1, 10] ms`);
  assert.equal(quantileMs(0.25, BOUNDS, [10, 20, 20, 20]), 0.5);
  assert.equal(quantileMs(0.5, BOUNDS, [0, 0, 0, 0]), null, "no observations: no percentile");
  // Everything beyond the last finite bound: the last finite bound is all one can say.
  assert.equal(quantileMs(0.99, BOUNDS, [0, 0, 0, 5]), 100);
});

test("windowStats counts only what was observed between the two samples", () => {
  const older = { bounds: BOUNDS, cumulative: [100, 100, 100, 100], count: 100, sum: 0.05 };
  const newer = { bounds: BOUNDS, cumulative: [100, 150, 150, 150], count: 150, sum: 0.3 };
  const w = windowStats(older, newer, 5);
  assert.equal(w.count, 50);
  assert.equal(w.total, 150);
  assert.equal(w.perSecond, 10);
  assert.ok(w.p50Ms !== null && w.p50Ms > 1 && w.p50Ms <= 10, `p50 ${w.p50Ms} is in the (1, 10] ms bucket`);
  assert.ok(Math.abs((w.meanMs ?? 0) - 5) < 1e-9, "mean over the window: 0.25 s / 50");
  const idle = windowStats(newer, newer, 5);
  assert.deepEqual(idle, { total: 150, count: 0, perSecond: 0, p50Ms: null, p99Ms: null, meanMs: null });
});

test("seriesByLabel adds up a RequestHistogram's series by op across outcome codes", () => {
  const registry = new Registry();
  const h = new RequestHistogram("raftkv_request_duration_seconds", "help", [0.001, 0.01], registry);
  h.observe("put", "OK", 0.0005);
  h.observe("put", "NOT_LEADER", 0.005);
  h.observe("get", "OK", 0.5);
  const by = seriesByLabel("raftkv_request_duration_seconds", h.get().values, "op");
  assert.deepEqual([...by.keys()].sort(), ["get", "put"]);
  const put = by.get("put")!;
  assert.deepEqual(put.bounds, [0.001, 0.01, Number.POSITIVE_INFINITY]);
  assert.deepEqual(put.cumulative, [1, 2, 2]);
  assert.equal(put.count, 2);
  assert.deepEqual(by.get("get")!.cumulative, [0, 0, 1]);
});
