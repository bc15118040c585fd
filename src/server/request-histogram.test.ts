import assert from "node:assert/strict";
import { test } from "node:test";
import { Histogram, Registry } from "prom-client";
import { RequestHistogram } from "./request-histogram.ts";

test("RequestHistogram exposes exactly what a prom-client Histogram does for the same observations", async () => {
  const buckets = [0.0005, 0.001, 0.01, 0.1, 1];
  const ours = new Registry();
  const theirs = new Registry();
  const h = new RequestHistogram("raftkv_request_duration_seconds", "Client request latency", buckets, ours);
  const ref = new Histogram({
    name: "raftkv_request_duration_seconds",
    help: "Client request latency",
    labelNames: ["op", "code"],
    buckets,
    registers: [theirs],
  });
  const samples: [string, string, number][] = [
    ["get", "OK", 0.0004],
    ["get", "OK", 0.0005], // on a bound: counted in that bucket (le is <=)
    ["get", "OK", 0.003],
    ["put", "OK", 0.02],
    ["put", "NOT_LEADER", 2.5], // beyond the last bound: +Inf only
    ["get", "OK", 0.09],
  ];
  for (const [op, code, s] of samples) {
    h.observe(op, code, s);
    ref.observe({ op, code }, s);
  }
  const text = await ours.metrics();
  assert.equal(text, await theirs.metrics());
  assert.match(text, /raftkv_request_duration_seconds_bucket\{le="0.0005",op="get",code="OK"\} 2/);
  assert.match(text, /raftkv_request_duration_seconds_count\{op="put",code="NOT_LEADER"\} 1/);
  ours.resetMetrics();
  assert.doesNotMatch(await ours.metrics(), /_count/);
});
