// Tests of the linearizability checker: hand-made (non-)linearizable histories, the parser, and properties.

import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { formatHistoryLine, type HistoryOp, parseHistoryJsonl } from "./history.ts";
import { type CheckResult, checkHistory } from "./linearizability.ts";

// ---- Builders: a completed op by default; `unknown` and `failed` change the outcome. ----

type Base = Omit<HistoryOp, "client" | "call" | "return">;

function at(client: number, call: number, ret: number, base: Base): HistoryOp {
  return { client, call, return: ret, ...base };
}

const put = (key: string, value: string): Base => ({
  op: "put",
  key,
  value,
  expected: null,
  ok: true,
  result: null,
});
const del = (key: string): Base => ({
  op: "delete",
  key,
  value: null,
  expected: null,
  ok: true,
  result: null,
});
const get = (key: string, result: string | null): Base => ({
  op: "get",
  key,
  value: null,
  expected: null,
  ok: true,
  result,
});
const cas = (key: string, expected: string | null, value: string, swapped: boolean): Base => ({
  op: "cas",
  key,
  value,
  expected,
  ok: true,
  result: swapped,
});

function unknown(op: HistoryOp): HistoryOp {
  return { ...op, return: null, ok: null, result: null };
}

function failed(op: HistoryOp): HistoryOp {
  return { ...op, ok: false, result: null };
}

function assertRejected(result: CheckResult, key: string): string {
  assert.equal(result.ok, false);
  assert.equal(result.verdict, "not-linearizable");
  assert.equal(result.violations.length, 1, JSON.stringify(result.violations));
  const v = result.violations[0]!;
  assert.equal(v.key, key);
  assert.ok(v.ops.length > 0);
  assert.equal(v.ops.length, v.opIndexes.length);
  return v.message;
}

function assertAccepted(result: CheckResult): void {
  assert.deepEqual(result.violations, []);
  assert.deepEqual(result.timedOutKeys, []);
  assert.equal(result.verdict, "linearizable");
  assert.equal(result.ok, true);
}

// ---- Histories that must be rejected. ----

test("a stale read (an older value after a newer write completed) is rejected", () => {
  const message = assertRejected(
    checkHistory([at(1, 0, 10, put("k", "a")), at(2, 20, 30, put("k", "b")), at(3, 40, 50, get("k", "a"))]),
    "k",
  );
  assert.match(
    message,
    /^key "k": #3 client 3 get k \[40\.000, 50\.000\]ms -> "a" saw "a", which was overwritten/,
  );
  assert.match(message, /#1 client 1 put k="a" \[0\.000, 10\.000\]ms ok: the last write of it to return/);
  assert.match(
    message,
    /#2 client 2 put k="b" .*: called after that, wrote "b" and returned before #3 was called/,
  );
});

test("a lost write (acknowledged, then a later read sees the older state) is rejected", () => {
  const history = [at(1, 0, 10, put("k", "a")), at(2, 5, 15, get("k", null)), at(2, 20, 25, get("k", null))];
  const message = assertRejected(checkHistory(history), "k");
  assert.match(message, /#3 client 2 get k .* saw absent, which was overwritten before it was called/);
  assert.match(message, /absent is the initial state/);
  assert.match(message, /#1 client 1 put k="a" .*: called after that, wrote "a" and returned before #3/);
});

test("a read of a value never written is rejected, naming the failed op that tried", () => {
  const history = [failed(at(1, 0, 10, put("k", "x"))), at(2, 20, 30, get("k", "x"))];
  const message = assertRejected(checkHistory(history), "k");
  assert.match(message, /#2 client 2 get k .* saw "x", a value no operation on this key ever wrote/);
  assert.match(message, /only failed ops tried: #1/);
});

test("a cas that swapped on a stale value is rejected", () => {
  const history = [
    at(1, 0, 10, put("k", "old")),
    at(2, 20, 30, put("k", "new")),
    at(3, 40, 50, cas("k", "old", "mine", true)),
  ];
  const message = assertRejected(checkHistory(history), "k");
  assert.match(message, /#3 client 3 cas k "old"->"mine" .* -> swapped saw "old", which was overwritten/);
});

test("a cas that swapped on a stale value, with the overwrite concurrent, is rejected by the search", () => {
  const history = [
    at(1, 0, 10, put("k", "old")),
    at(2, 20, 60, put("k", "new")),
    at(3, 30, 40, get("k", "new")),
    at(4, 50, 70, cas("k", "old", "mine", true)),
  ];
  const message = assertRejected(checkHistory(history), "k");
  assert.match(message, /no linearization of its 4 operations exists/);
  assert.match(message, /it swapped, so it saw "old", but the key is "new"/);
});

test("a cas that did not swap although the key held the expected value is rejected", () => {
  const history = [at(1, 0, 10, put("k", "a")), at(2, 20, 30, cas("k", "a", "b", false))];
  assertRejected(checkHistory(history), "k");
});

test("a read of a deleted key returning the old value is rejected", () => {
  const history = [at(1, 0, 10, put("k", "v")), at(2, 20, 30, del("k")), at(3, 40, 50, get("k", "v"))];
  assertRejected(checkHistory(history), "k");
});

test("reads that see two concurrent writes in opposite orders are rejected", () => {
  const history = [
    at(1, 0, 100, put("k", "a")),
    at(2, 0, 100, put("k", "b")),
    at(3, 10, 20, get("k", "a")),
    at(3, 30, 40, get("k", "b")),
    at(4, 10, 20, get("k", "b")),
    at(4, 30, 40, get("k", "a")),
  ];
  const message = assertRejected(checkHistory(history), "k");
  assert.match(message, /^key "k": no linearization of its 6 operations exists\.\n/);
  assert.match(message, /The longest valid order found places \d of them, ending with:/);
  assert.match(message, /must take effect before it returns, but no pending op can go next:/);
});

test("an unknown write cannot explain a read that returned before the write was called", () => {
  const history = [at(1, 0, 10, get("k", "x")), unknown(at(2, 20, 0, put("k", "x")))];
  assertRejected(checkHistory(history), "k");
});

test("only the bad key is reported, and the good keys still count", () => {
  const history = [
    at(1, 0, 10, put("good", "a")),
    at(1, 20, 30, get("good", "a")),
    at(2, 0, 10, put("bad", "a")),
    at(2, 20, 30, get("bad", null)),
  ];
  const result = checkHistory(history);
  assertRejected(result, "bad");
  assert.equal(result.keysChecked, 2);
  assert.equal(result.opsChecked, 4);
});

// ---- Histories that must pass. ----

test("concurrent writes, with reads seeing either one", () => {
  const history = [
    at(1, 0, 100, put("k", "a")),
    at(2, 0, 100, put("k", "b")),
    at(3, 10, 20, get("k", "a")),
    at(3, 30, 40, get("k", "b")),
    at(4, 10, 20, get("k", null)),
    at(4, 50, 60, get("k", "b")),
    at(5, 150, 160, get("k", "b")),
  ];
  assertAccepted(checkHistory(history));
  const otherOrder = [...history.slice(0, 3), at(3, 30, 40, get("k", "a")), at(5, 150, 160, get("k", "a"))];
  assertAccepted(checkHistory(otherOrder));
});

test("ops that touch at one instant count as concurrent", () => {
  assertAccepted(checkHistory([at(1, 10, 20, put("k", "a")), at(2, 20, 30, get("k", null))]));
});

test("an unknown write may take effect, late or not at all", () => {
  const tookEffect = [unknown(at(1, 0, 0, put("k", "x"))), at(2, 500, 510, get("k", "x"))];
  assertAccepted(checkHistory(tookEffect));
  const never = [unknown(at(1, 0, 0, put("k", "x"))), at(2, 500, 510, get("k", null))];
  assertAccepted(checkHistory(never));
  const late = [
    unknown(at(1, 0, 0, put("k", "x"))),
    at(2, 500, 510, get("k", null)),
    at(2, 600, 610, get("k", "x")),
  ];
  assertAccepted(checkHistory(late));
});

test("an unknown write that took effect stays in effect", () => {
  const history = [
    unknown(at(1, 0, 0, put("k", "x"))),
    at(2, 500, 510, get("k", "x")),
    at(2, 600, 610, get("k", null)),
  ];
  assertRejected(checkHistory(history), "k");
  const overwritten = [
    ...history.slice(0, 2),
    at(3, 520, 530, put("k", "y")),
    at(2, 600, 610, get("k", "x")),
  ];
  const message = assertRejected(checkHistory(overwritten), "k");
  assert.match(message, /outcome unknown, but as the value's only writer it took effect by 510\.000ms/);
});

test("unknown writes of the same value may each take effect", () => {
  const history = [
    unknown(at(1, 0, 0, put("k", "x"))),
    unknown(at(2, 0, 0, put("k", "x"))),
    at(3, 10, 20, get("k", "x")),
    at(3, 30, 40, put("k", "y")),
    at(3, 50, 60, get("k", "x")),
    at(3, 70, 80, put("k", "y")),
    at(3, 90, 100, get("k", "y")),
  ];
  assertAccepted(checkHistory(history));
  assertRejected(checkHistory([...history, at(3, 110, 120, get("k", "x"))]), "k");
});

test("unknown writes with different effects are used in any order", () => {
  const values = ["x", "x", "y", "y"].map((v, i) => unknown(at(1, i, 0, put("k", v))));
  const reads = ["y", "x", "y", "x"].map((v, i) => at(2, 10 + 20 * i, 20 + 20 * i, get("k", v)));
  assertAccepted(checkHistory([...values, ...reads]));
  const casAndPut = [
    at(1, 0, 5, put("k", "c")),
    unknown(at(2, 10, 0, cas("k", "a", "b", true))),
    unknown(at(3, 11, 0, put("k", "b"))),
    at(4, 20, 25, get("k", "b")),
    at(4, 30, 35, put("k", "a")),
    at(4, 40, 45, get("k", "b")),
  ];
  assertAccepted(checkHistory(casAndPut));
  const twoCas = [
    at(1, 0, 5, put("k", "c")),
    unknown(at(2, 10, 0, cas("k", "a", "b", true))),
    unknown(at(3, 11, 0, cas("k", "c", "b", true))),
    at(4, 20, 25, get("k", "b")),
    at(4, 30, 35, put("k", "a")),
    at(4, 40, 45, get("k", "b")),
  ];
  assertAccepted(checkHistory(twoCas));
});

test("unknown writes nobody reads may still make a cas miss, once each", () => {
  const miss = (call: number): HistoryOp => at(3, call, call + 5, cas("k", "a", "z", false));
  const history = [
    at(1, 0, 10, put("k", "a")),
    unknown(at(2, 20, 0, put("k", "u1"))),
    unknown(at(2, 20, 0, put("k", "u2"))),
    miss(30),
    at(1, 40, 45, put("k", "a")),
    miss(50),
    at(1, 60, 65, put("k", "a")),
  ];
  assertAccepted(checkHistory(history));
  assertRejected(checkHistory([...history, miss(70)]), "k");
});

test("an unknown delete and an unknown cas may or may not take effect", () => {
  const base = [at(1, 0, 10, put("k", "a"))];
  const deleted = [
    ...base,
    unknown(at(2, 20, 0, del("k"))),
    at(3, 30, 40, get("k", "a")),
    at(3, 50, 60, get("k", null)),
  ];
  assertAccepted(checkHistory(deleted));
  const swapped = unknown(at(2, 20, 0, cas("k", "a", "b", true)));
  assertAccepted(checkHistory([...base, swapped, at(3, 30, 40, get("k", "b"))]));
  assertAccepted(checkHistory([...base, swapped, at(3, 30, 40, get("k", "a"))]));
});

test("an unknown write may explain a cas that did not swap", () => {
  const history = [unknown(at(1, 0, 0, put("k", "x"))), at(2, 10, 20, cas("k", null, "y", false))];
  assertAccepted(checkHistory(history));
});

test("failed ops and unknown reads are dropped", () => {
  const history = [
    failed(at(1, 0, 10, put("k", "x"))),
    failed(at(1, 11, 20, cas("k", null, "y", true))),
    unknown(at(2, 5, 0, get("k", "nonsense"))),
    at(3, 30, 40, get("k", null)),
  ];
  const result = checkHistory(history);
  assertAccepted(result);
  assert.equal(result.opsChecked, 1);
  assert.equal(result.opsUnknownOutcome, 1);
});

test("a cas that swapped from absent, and one that did not swap, in one history", () => {
  const history = [
    at(1, 0, 10, cas("k", null, "a", true)),
    at(2, 5, 15, cas("k", null, "b", false)),
    at(3, 20, 30, cas("k", "a", "c", true)),
    at(3, 40, 50, get("k", "c")),
  ];
  assertAccepted(checkHistory(history));
});

test("a key whose search runs out of steps is unknown: neither pass nor fail", () => {
  const history = [at(1, 0, 10, put("k", "a")), at(2, 0, 10, put("k", "b")), at(3, 20, 30, get("k", "b"))];
  const result = checkHistory(history, { maxStepsPerKey: 2 });
  assert.deepEqual(result.timedOutKeys, ["k"]);
  assert.deepEqual(result.violations, []);
  assert.equal(result.verdict, "unknown");
  assert.equal(result.ok, false);
  assertAccepted(checkHistory(history));
});

test("an empty history is linearizable", () => {
  const result = checkHistory([]);
  assertAccepted(result);
  assert.equal(result.keysChecked, 0);
});

// ---- The history.jsonl format. ----

test("history lines round-trip through the writer and the parser", () => {
  const history = [
    at(1, 0.25, 10.5, put("k", "a")),
    unknown(at(2, 1, 0, cas("k", "a", "b", true))),
    at(3, 20, 30, get("k", null)),
    failed(at(4, 20, 30, del("k"))),
  ];
  const text = `${history.map(formatHistoryLine).join("\n")}\n\n`;
  assert.deepEqual(parseHistoryJsonl(text), history);
});

test("the parser rejects a bad line, naming the line and the rule", () => {
  const good = formatHistoryLine(at(1, 0, 10, put("k", "a")));
  const bad = (patch: Record<string, unknown>): string => JSON.stringify({ ...JSON.parse(good), ...patch });
  const cases: [string, RegExp][] = [
    ["{not json", /h:2: not valid JSON/],
    [bad({ op: "append" }), /h:2: field "op" must be one of put, get, delete, cas/],
    [bad({ ok: true, return: null }), /h:2: ok:true needs a return time/],
    [bad({ return: -1 }), /h:2: return -1 is before call 0/],
    [bad({ ok: null }), /h:2: ok:null \(unknown outcome\) must have return:null/],
    [bad({ op: "cas", expected: "a", ok: false, result: false }), /h:2: result must be null/],
    [bad({ op: "get", value: null, result: true }), /h:2: a get's result is a string or null/],
    [bad({ value: null }), /h:2: put needs a string value/],
    [bad({ client: 1.5 }), /h:2: field "client" must be an integer/],
    [JSON.stringify({ client: 1 }), /h:2: missing field "op"/],
  ];
  for (const [line, expected] of cases) {
    assert.throws(() => parseHistoryJsonl(`${good}\n${line}\n`, "h"), expected, line);
  }
});

// ---- Properties. A failing run prints the seed; replay with LIN_SEED=<seed>. ----

const seed = Number(process.env["LIN_SEED"] ?? Math.floor(Math.random() * 2 ** 31));

type Outcome = "ok" | "failed" | "unknown";

interface PlannedOp {
  readonly client: number;
  readonly key: number;
  readonly op: HistoryOp["op"];
  /** Chooses cas's expected value among the values the key has held, and a mutation's target. */
  readonly pick: number;
  readonly outcome: Outcome;
  /** For an unknown outcome: whether it took effect. */
  readonly applies: boolean;
  /** Call before, and return after, the op's linearization point. */
  readonly leadMs: number;
  readonly lagMs: number;
}

function plannedOp(maxSkewMs: number, outcomes: readonly Outcome[]): fc.Arbitrary<PlannedOp> {
  return fc.record({
    client: fc.integer({ min: 0, max: 7 }),
    key: fc.integer({ min: 0, max: 2 }),
    op: fc.constantFrom<HistoryOp["op"]>("put", "get", "delete", "cas"),
    pick: fc.nat(),
    outcome: fc.constantFrom(...outcomes),
    applies: fc.boolean(),
    leadMs: fc.double({ min: 0, max: maxSkewMs, noNaN: true }),
    lagMs: fc.double({ min: 0, max: maxSkewMs, noNaN: true }),
  });
}

const SPACING_MS = 10;

/** Runs the plan on a sequential register, op i taking effect at i * SPACING_MS, inside its interval. */
function simulate(plan: readonly PlannedOp[]): HistoryOp[] {
  const state = new Map<string, string | null>();
  const held = new Map<string, (string | null)[]>();
  return plan.map((p, i) => {
    const key = `k${p.key}`;
    const current = state.get(key) ?? null;
    const history = held.get(key) ?? [null];
    held.set(key, history);
    const expected = history[p.pick % history.length] ?? null;
    const value = p.op === "put" || p.op === "cas" ? `v${i}` : null;
    const runs = p.outcome === "ok" || (p.outcome === "unknown" && p.applies);
    const swapped = p.op === "cas" && expected === current;
    if (runs && (p.op === "put" || swapped)) state.set(key, value);
    if (runs && p.op === "delete") state.set(key, null);
    if (runs && value !== null && (p.op === "put" || swapped)) history.push(value);
    const at = i * SPACING_MS;
    const known = p.outcome !== "unknown";
    const result = p.outcome !== "ok" ? null : p.op === "get" ? current : p.op === "cas" ? swapped : null;
    return {
      client: p.client,
      op: p.op,
      key,
      value,
      expected: p.op === "cas" ? expected : null,
      call: at - p.leadMs,
      return: known ? at + p.lagMs : null,
      ok: known ? p.outcome === "ok" : null,
      result,
    };
  });
}

const ALL_OUTCOMES: readonly Outcome[] = ["ok", "ok", "ok", "ok", "failed", "unknown"];

test("histories of a sequential register, with overlapping intervals, pass", (t) => {
  t.diagnostic(`seed ${seed}`);
  const plans = fc.array(plannedOp(35, ALL_OUTCOMES), { minLength: 1, maxLength: 80 });
  fc.assert(
    fc.property(plans, (plan) => {
      const result = checkHistory(simulate(plan));
      assert.deepEqual(result.violations, []);
      assert.equal(result.verdict, "linearizable");
    }),
    { seed, numRuns: 300 },
  );
});

test("changing one read to a value never written makes a history fail", (t) => {
  t.diagnostic(`seed ${seed}`);
  const plans = fc.array(plannedOp(35, ALL_OUTCOMES), { minLength: 1, maxLength: 80 });
  fc.assert(
    fc.property(plans, fc.nat(), (plan, which) => {
      const history = simulate(plan);
      const reads = indexesWhere(history, (op) => op.op === "get" && op.ok === true);
      fc.pre(reads.length > 0);
      const target = reads[which % reads.length]!;
      history[target] = { ...history[target]!, result: "never-written" };
      assert.equal(checkHistory(history).verdict, "not-linearizable");
    }),
    { seed, numRuns: 300 },
  );
});

test("changing one read or cas outcome in a history without overlap makes it fail", (t) => {
  t.diagnostic(`seed ${seed}`);
  // Intervals narrower than the spacing and no unknown outcomes: the only linearization is the real one.
  const plans = fc.array(plannedOp(SPACING_MS / 2 - 0.01, ["ok", "ok", "failed"]), {
    minLength: 1,
    maxLength: 60,
  });
  fc.assert(
    fc.property(plans, fc.nat(), (plan, which) => {
      const history = simulate(plan);
      const observations = indexesWhere(
        history,
        (op) => op.ok === true && (op.op === "get" || op.op === "cas"),
      );
      fc.pre(observations.length > 0);
      const target = observations[which % observations.length]!;
      history[target] = mutateObservation(history, target, which);
      const result = checkHistory(history);
      assert.equal(result.verdict, "not-linearizable");
      assert.ok(result.violations[0]!.opIndexes.length > 0);
    }),
    { seed, numRuns: 300 },
  );
});

/** A get now reads another value the key held at some time (or absent); a cas reports the other outcome. */
function mutateObservation(history: readonly HistoryOp[], target: number, which: number): HistoryOp {
  const op = history[target]!;
  if (op.op === "cas") return { ...op, result: op.result !== true };
  const written = history.filter((o) => o.key === op.key && o.value !== null).map((o) => o.value);
  const others = [null, ...written].filter((v) => v !== op.result);
  return { ...op, result: others[which % others.length] ?? "never-written" };
}

function indexesWhere(history: readonly HistoryOp[], pred: (op: HistoryOp) => boolean): number[] {
  return history.flatMap((op, i) => (pred(op) ? [i] : []));
}

// ---- The search against brute force, on small arbitrary (mostly non-linearizable) histories. ----

function tinyHistory(maxLength: number, outcomes: readonly Outcome[]): fc.Arbitrary<HistoryOp[]> {
  const value = fc.constantFrom("a", "b", "c");
  const maybe = fc.constantFrom<string | null>(null, "a", "b", "c");
  const op = fc
    .record({
      client: fc.nat({ max: 3 }),
      op: fc.constantFrom<HistoryOp["op"]>("put", "get", "delete", "cas"),
      value,
      expected: maybe,
      read: maybe,
      swapped: fc.boolean(),
      outcome: fc.constantFrom(...outcomes),
      call: fc.nat({ max: 8 }),
      durationMs: fc.nat({ max: 4 }),
    })
    .map((r): HistoryOp => {
      const writes = r.op === "put" || r.op === "cas";
      const ok = r.outcome === "unknown" ? null : r.outcome === "ok";
      const result = ok !== true ? null : r.op === "get" ? r.read : r.op === "cas" ? r.swapped : null;
      return {
        client: r.client,
        op: r.op,
        key: "k",
        value: writes ? r.value : null,
        expected: r.op === "cas" ? r.expected : null,
        call: r.call,
        return: ok === null ? null : r.call + r.durationMs,
        ok,
        result,
      };
    });
  return fc.array(op, { maxLength });
}

/** Tries every order that respects real time; unknown-outcome ops may also be left out. */
function bruteForceLinearizable(history: readonly HistoryOp[]): boolean {
  const ops = history.filter((op) => op.ok === true || (op.ok === null && op.op !== "get"));
  const ret = (op: HistoryOp): number => op.return ?? Number.POSITIVE_INFINITY;
  const search = (left: readonly HistoryOp[], state: string | null): boolean =>
    left.every((op) => op.ok === null) ||
    left.some((x, i) => {
      if (left.some((y) => ret(y) < x.call)) return false;
      const next = applyOp(x, state);
      return next !== undefined && search([...left.slice(0, i), ...left.slice(i + 1)], next);
    });
  return search(ops, null);
}

/** The register's value after `op`, or undefined when `op` cannot have returned what it did. */
function applyOp(op: HistoryOp, state: string | null): string | null | undefined {
  switch (op.op) {
    case "put":
      return op.value;
    case "delete":
      return null;
    case "get":
      return op.result === state ? state : undefined;
    case "cas":
      if (op.ok === null) return state === op.expected ? op.value : state;
      if (op.result === true) return state === op.expected ? op.value : undefined;
      return state !== op.expected ? state : undefined;
  }
}

function agreesWithBruteForce(histories: fc.Arbitrary<HistoryOp[]>, numRuns: number): void {
  let rejected = 0;
  fc.assert(
    fc.property(histories, (history) => {
      const expected = bruteForceLinearizable(history);
      const result = checkHistory(history);
      assert.equal(result.verdict, expected ? "linearizable" : "not-linearizable");
      if (!expected) rejected++;
    }),
    { seed, numRuns },
  );
  assert.ok(rejected > numRuns / 20, `only ${rejected} of ${numRuns} histories were not linearizable`);
}

test("the checker agrees with brute force on small histories", (t) => {
  t.diagnostic(`seed ${seed}`);
  agreesWithBruteForce(tinyHistory(7, ["ok", "ok", "failed", "unknown"]), 3000);
});

test("the checker agrees with brute force on small histories full of unknown outcomes", (t) => {
  t.diagnostic(`seed ${seed}`);
  agreesWithBruteForce(tinyHistory(8, ["ok", "unknown"]), 1500);
});
