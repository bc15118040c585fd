// Property tests for quorum math (§5.3 commit rule, leases, ReadIndex).

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { majority, quorumValue, tally } from "./quorum.ts";

test("majority(n) is the smallest count more than half of n", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1000 }), (n) => {
      const m = majority(n);
      return 2 * m > n && 2 * (m - 1) <= n;
    }),
  );
});

test("quorumValue is the largest value a majority has reached", () => {
  fc.assert(
    fc.property(fc.array(fc.nat(1000), { minLength: 1, maxLength: 9 }), (values) => {
      const q = quorumValue(values);
      const atLeast = (v: number): number => values.filter((x) => x >= v).length;
      assert.ok(atLeast(q) >= majority(values.length), `a majority must have reached ${q}`);
      assert.ok(atLeast(q + 1) < majority(values.length), `${q + 1} must not be reached by a majority`);
    }),
  );
});

test("tally: won and lost are decided by a majority and never both", () => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 9 }), fc.array(fc.boolean(), { maxLength: 9 }), (n, raw) => {
      const votes = new Map(raw.slice(0, n).map((v, i) => [i, v] as const));
      const granted = [...votes.values()].filter((v) => v).length;
      const refused = votes.size - granted;
      const r = tally(votes, n);
      if (granted >= majority(n)) return r === "won";
      if (refused >= majority(n)) return r === "lost";
      return r === "pending";
    }),
  );
});
