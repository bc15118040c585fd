// Linearizability of a KV history, key by key: Wing & Gong search with Lowe's memoization, step-bounded.
//
// Keys are independent registers, so each is checked alone (Herlihy & Wing's locality). For one key the
// search is Wing & Gong's with the cache from Lowe, "Testing for Linearizability" (CCPE 29(4), 2017): walk
// the ops in time order, linearize any pending op whose effect the register model allows, backtrack when an
// op's return is reached before it was linearized, and never revisit a (set of linearized ops, value) pair.
// Unknown outcomes (ok:null) return at +infinity, so they may take effect at any time after their call or,
// by being linearized after everything else, never. Failed ops (ok:false) and unknown gets are dropped.
//
// On top of Lowe's search, each of these keeps the answer exact and is argued where it is coded:
// - two quick checks find the common violations (a read of a value never written, a read of a value
//   overwritten before the read began) before any search, with a plain explanation;
// - unknown writes are bound, dropped or grouped into twins (prepareUnknownWrites, rankTwins);
// - a read that fits the current value is placed without branching (Search.backtrack);
// - values that no pending op looks at are memoized as one (Search.memoValue).

import { assert } from "../lib/assert.ts";
import { describeOp, describeValue, type HistoryOp } from "./history.ts";

/** Search steps one key may take before it is reported as unknown (timed out) rather than pass or fail. */
export const DEFAULT_MAX_STEPS_PER_KEY = 2_000_000;

export interface CheckOptions {
  /** Search steps allowed per key; beyond it the key is reported in `timedOutKeys`. */
  readonly maxStepsPerKey?: number;
}

/** linearizable: every key passed; not-linearizable: a key has no linearization; unknown: neither shown. */
export type Verdict = "linearizable" | "not-linearizable" | "unknown";

export interface Violation {
  readonly key: string;
  /** For a person: the key, the ops and the register value where no linearization can continue. */
  readonly message: string;
  /** The operations around that point, by call time. */
  readonly ops: readonly HistoryOp[];
  /** Their positions in the checked history (0-based; op i is line i+1 of history.jsonl). */
  readonly opIndexes: readonly number[];
}

export interface CheckResult {
  /** True only when every key was proven linearizable. */
  readonly ok: boolean;
  readonly verdict: Verdict;
  readonly keysChecked: number;
  /** Ops that took part in the search (failed ops and unknown-outcome gets excluded). */
  readonly opsChecked: number;
  /** Ops in the history with an unknown outcome (ok:null); above ~20% a run is too weak to count. */
  readonly opsUnknownOutcome: number;
  readonly violations: readonly Violation[];
  /** Keys whose search ran out of steps: neither pass nor fail. */
  readonly timedOutKeys: readonly string[];
  /** Search steps taken over all keys. */
  readonly steps: number;
}

/** Checks every key of `history` (ops in any order) and gathers the verdicts. */
export function checkHistory(history: readonly HistoryOp[], options: CheckOptions = {}): CheckResult {
  const maxSteps = options.maxStepsPerKey ?? DEFAULT_MAX_STEPS_PER_KEY;
  assert(Number.isSafeInteger(maxSteps) && maxSteps > 0, () => `maxStepsPerKey ${maxSteps} must be > 0`);
  const violations: Violation[] = [];
  const timedOutKeys: string[] = [];
  let opsChecked = 0;
  let steps = 0;
  const byKey = groupByKey(history);
  for (const [key, indexes] of byKey) {
    const outcome = checkKey(history, key, indexes, maxSteps);
    opsChecked += outcome.opsChecked;
    steps += outcome.steps;
    if (outcome.kind === "violation") violations.push(outcome.violation);
    if (outcome.kind === "timeout") timedOutKeys.push(key);
  }
  const verdict: Verdict =
    violations.length > 0 ? "not-linearizable" : timedOutKeys.length > 0 ? "unknown" : "linearizable";
  const opsUnknownOutcome = history.filter((op) => op.ok === null).length;
  const ok = verdict === "linearizable";
  return {
    ok,
    verdict,
    keysChecked: byKey.size,
    opsChecked,
    opsUnknownOutcome,
    violations,
    timedOutKeys,
    steps,
  };
}

export type KeyOutcome =
  | { readonly kind: "linearizable"; readonly opsChecked: number; readonly steps: number }
  | { readonly kind: "timeout"; readonly opsChecked: number; readonly steps: number }
  | {
      readonly kind: "violation";
      readonly opsChecked: number;
      readonly steps: number;
      readonly violation: Violation;
    };

/** Checks the ops of one key: `indexes` are the positions in `history` of every op on `key`. */
export function checkKey(
  history: readonly HistoryOp[],
  key: string,
  indexes: readonly number[],
  maxSteps: number,
): KeyOutcome {
  const prepared = prepareKey(history, indexes);
  const opsChecked = prepared.opsChecked;
  const quick = findUnwrittenRead(history, key, prepared) ?? findOverwrittenRead(history, key, prepared);
  if (quick !== null) return { kind: "violation", opsChecked, steps: 0, violation: quick };
  const found = search(prepared.ops, prepared.values.length, maxSteps);
  switch (found.kind) {
    case "linearizable":
    case "timeout":
      return { kind: found.kind, opsChecked, steps: found.steps };
    case "violation": {
      const violation = explain(history, key, prepared, found.deepest);
      return { kind: "violation", opsChecked, steps: found.steps, violation };
    }
  }
}

function groupByKey(history: readonly HistoryOp[]): Map<string, number[]> {
  const byKey = new Map<string, number[]>();
  history.forEach((op, i) => {
    const list = byKey.get(op.key);
    if (list === undefined) byKey.set(op.key, [i]);
    else list.push(i);
  });
  return byKey;
}

// ---- The register model. Values are interned per key: 0 is "absent", 1.. index `values`. ----

const ABSENT = 0;
const INVALID = -1;

/** How an op acts on the register; cas splits by outcome so that each step is deterministic. */
type ModelKind = "put" | "delete" | "get" | "cas-swapped" | "cas-not-swapped" | "cas-unknown";

interface ModelOp {
  /** Position in the history. */
  readonly index: number;
  readonly kind: ModelKind;
  /** put/cas: the value written; delete: ABSENT; get: the value read. */
  readonly value: number;
  /** cas: the value compared against. */
  readonly expected: number;
  readonly call: number;
  /** +Infinity for an unknown outcome. */
  readonly ret: number;
  /** Unknown-outcome writes with the same effect are twins (see rankTwins): their class, or -1. */
  readonly twinClass: number;
  /** Its place among its twins by call time; the search uses twins in this order. */
  readonly twinRank: number;
}

/** The register value after `op` runs on `state`, or INVALID when `op` cannot have returned what it did. */
function step(op: ModelOp, state: number): number {
  switch (op.kind) {
    case "put":
      return op.value;
    case "delete":
      return ABSENT;
    case "get":
      return state === op.value ? state : INVALID;
    case "cas-swapped":
      return state === op.expected ? op.value : INVALID;
    case "cas-not-swapped":
      return state !== op.expected ? state : INVALID;
    case "cas-unknown":
      // Taking effect here means running here; "never" is covered by linearizing it after everything.
      return state === op.expected ? op.value : state;
  }
}

/** The value id that `op` compares the register with, or -1 for put and delete. */
function readsValue(op: ModelOp): number {
  switch (op.kind) {
    case "get":
      return op.value;
    case "cas-swapped":
    case "cas-not-swapped":
    case "cas-unknown":
      return op.expected;
    case "put":
    case "delete":
      return -1;
  }
}

/** Ops that leave the value as it is whenever they fit it. */
function isRead(op: ModelOp): boolean {
  return op.kind === "get" || op.kind === "cas-not-swapped";
}

/** The value `op` must have seen to return what it did (a get's result, a swapped cas's expected), or -1. */
function needsValue(op: ModelOp): number {
  return op.kind === "get" ? op.value : op.kind === "cas-swapped" ? op.expected : -1;
}

/** Ops that may set the register (a cas with unknown outcome included). */
function changesValue(op: ModelOp): boolean {
  return op.kind === "put" || op.kind === "delete" || op.kind === "cas-swapped" || op.kind === "cas-unknown";
}

interface PreparedKey {
  /** The ops the search must order (unknown writes that nothing could observe are left out). */
  readonly ops: readonly ModelOp[];
  /** Ops taking part, including the unobservable unknown writes left out of `ops`. */
  readonly opsChecked: number;
  /** Interned value i is values[i]; values[0] is null (absent). */
  readonly values: readonly (string | null)[];
}

function prepareKey(history: readonly HistoryOp[], indexes: readonly number[]): PreparedKey {
  const values: (string | null)[] = [null];
  const ids = new Map<string, number>();
  const intern = (v: string | null): number => {
    if (v === null) return ABSENT;
    let id = ids.get(v);
    if (id === undefined) ids.set(v, (id = values.push(v) - 1));
    return id;
  };
  const ops: ModelOp[] = [];
  for (const index of indexes) {
    const op = history[index]!;
    if (op.ok === false || (op.ok === null && op.op === "get")) continue;
    ops.push(toModelOp(op, index, intern));
  }
  return { ops: prepareUnknownWrites(ops), opsChecked: ops.length, values };
}

function toModelOp(op: HistoryOp, index: number, intern: (v: string | null) => number): ModelOp {
  assert(op.ok !== true || (op.return !== null && op.return >= op.call), () => `op #${index + 1}: bad times`);
  const ret = op.ok === null ? Number.POSITIVE_INFINITY : (op.return ?? Number.POSITIVE_INFINITY);
  const base = {
    index,
    call: op.call,
    ret,
    value: intern(op.value),
    expected: intern(op.expected),
    twinClass: -1,
    twinRank: -1,
  };
  switch (op.op) {
    case "put":
      return { ...base, kind: "put" };
    case "delete":
      return { ...base, kind: "delete", value: ABSENT };
    case "get":
      assert(typeof op.result !== "boolean", () => `op #${index + 1}: get result must be a string or null`);
      return { ...base, kind: "get", value: intern(op.result) };
    case "cas":
      if (op.ok === null) return { ...base, kind: "cas-unknown" };
      assert(typeof op.result === "boolean", () => `op #${index + 1}: cas result must be a boolean`);
      return { ...base, kind: op.result ? "cas-swapped" : "cas-not-swapped" };
  }
}

/**
 * Unknown-outcome writes would stay pending to the end of the history, each doubling the search; most can be
 * pinned down. Each rule keeps the set of valid linearizations non-empty exactly when it was:
 * - bound: something read its value (a get, or a cas that swapped) and no other op wrote it, so it took
 *   effect before the first such read returned; it gets that return time.
 * - dropped: no get or cas looks at its value and no cas that did not swap can come after it. Nothing can
 *   observe the register between it and the next write, so any order with it is still valid without it.
 * The rest stay pending to the end, and rankTwins keeps those alike from multiplying the search.
 */
function prepareUnknownWrites(ops: readonly ModelOp[]): ModelOp[] {
  const looked = new Set<number>();
  const writers = new Map<number, number>();
  const firstReadReturn = new Map<number, number>();
  let lastMissReturn = Number.NEGATIVE_INFINITY;
  for (const op of ops) {
    if (readsValue(op) >= 0) looked.add(readsValue(op));
    if (changesValue(op)) writers.set(op.value, (writers.get(op.value) ?? 0) + 1);
    const needs = needsValue(op);
    if (needs >= 0) firstReadReturn.set(needs, Math.min(op.ret, firstReadReturn.get(needs) ?? op.ret));
    if (op.kind === "cas-not-swapped") lastMissReturn = Math.max(lastMissReturn, op.ret);
  }
  const out: ModelOp[] = [];
  for (const op of ops) {
    const unknownWrite = op.ret === Number.POSITIVE_INFINITY && op.kind !== "get";
    const deadline = firstReadReturn.get(op.value);
    if (!unknownWrite) out.push(op);
    else if (deadline !== undefined && op.value !== ABSENT && writers.get(op.value) === 1) {
      out.push({ ...op, ret: Math.max(op.call, deadline) });
    } else if (!looked.has(op.value) && lastMissReturn < op.call) continue;
    else out.push(op);
  }
  return rankTwins(out, looked);
}

/**
 * Unknown-outcome writes pending to the end are twins when they have the same effect: same kind and expected
 * value, and the same value written or, for values no get or cas looks at, any such value (every op treats
 * those alike). Once called, twins are interchangeable, so swapping them in any valid order gives another;
 * the search therefore only ever places the earliest-called twin not yet placed.
 */
function rankTwins(ops: ModelOp[], looked: ReadonlySet<number>): ModelOp[] {
  const classes = new Map<string, number[]>();
  ops.forEach((op, i) => {
    if (op.ret !== Number.POSITIVE_INFINITY) return;
    const effect = looked.has(op.value) ? `=${op.value}` : "unread";
    const key = op.kind === "cas-unknown" ? `cas ${op.expected} ${effect}` : `set ${effect}`;
    classes.set(key, [...(classes.get(key) ?? []), i]);
  });
  [...classes.values()].forEach((members, twinClass) => {
    members.sort((a, b) => ops[a]!.call - ops[b]!.call || a - b);
    members.forEach((i, twinRank) => {
      ops[i] = { ...ops[i]!, twinClass, twinRank };
    });
  });
  return ops;
}

// ---- The search (Wing & Gong with Lowe's cache) over a linked list of call and return entries. ----

/** A list of 2n entries: op i has call entry 2i+1 and return entry 2i+2; 0 is the head, 2n+1 the tail. */
class EntryList {
  readonly head = 0;
  readonly tail: number;
  readonly next: Int32Array;
  readonly prev: Int32Array;

  constructor(ops: readonly ModelOp[]) {
    this.tail = 2 * ops.length + 1;
    this.next = new Int32Array(this.tail + 1);
    this.prev = new Int32Array(this.tail + 1);
    const time = (e: number): number => {
      const op = ops[EntryList.opOf(e)]!;
      return EntryList.isCall(e) ? op.call : op.ret;
    };
    // Ties put calls first, so ops that touch at one instant count as concurrent.
    const order = Array.from({ length: 2 * ops.length }, (_, i) => i + 1).sort(
      (a, b) => time(a) - time(b) || (a & 1 ? 0 : 1) - (b & 1 ? 0 : 1) || a - b,
    );
    let last = this.head;
    for (const e of order) {
      this.link(last, e);
      last = e;
    }
    this.link(last, this.tail);
  }

  static isCall(e: number): boolean {
    return (e & 1) === 1;
  }

  static opOf(e: number): number {
    return (e - 1) >> 1;
  }

  static callOf(op: number): number {
    return 2 * op + 1;
  }

  isEmpty(): boolean {
    return this.next[this.head] === this.tail;
  }

  first(): number {
    return this.next[this.head]!;
  }

  /** Takes op i's call and return entries out of the list. */
  lift(i: number): void {
    this.unlink(2 * i + 1);
    this.unlink(2 * i + 2);
  }

  /** Undoes lift(i): entries go back in the reverse order they left (dancing links). */
  unlift(i: number): void {
    this.relink(2 * i + 2);
    this.relink(2 * i + 1);
  }

  private link(a: number, b: number): void {
    this.next[a] = b;
    this.prev[b] = a;
  }

  private unlink(e: number): void {
    this.link(this.prev[e]!, this.next[e]!);
  }

  private relink(e: number): void {
    this.next[this.prev[e]!] = e;
    this.prev[this.next[e]!] = e;
  }
}

/** The longest linearizable prefix the search reached, and where it got stuck. */
interface Deepest {
  /** Ops linearized, in order. */
  readonly order: readonly number[];
  /** The register value after them. */
  readonly state: number;
  /** The op whose return was reached before it could be linearized. */
  readonly blocking: number;
  /** Every op that could have gone next (the blocking op included); none leads to a linearization. */
  readonly candidates: readonly number[];
}

type SearchOutcome =
  | { readonly kind: "linearizable"; readonly steps: number }
  | { readonly kind: "timeout"; readonly steps: number }
  | { readonly kind: "violation"; readonly steps: number; readonly deepest: Deepest };

function search(ops: readonly ModelOp[], valueCount: number, maxSteps: number): SearchOutcome {
  return new Search(ops, valueCount, maxSteps).run();
}

/** No entry: the search has backtracked past the first op, so no linearization exists. */
const NONE = -1;

class Search {
  private readonly list: EntryList;
  private readonly linearized: Bitset;
  /** Lowe's cache: the (linearized set, value) configurations reached; those off the path are dead ends. */
  private readonly seen = new Set<string>();
  private readonly stackOps: Int32Array;
  private readonly stackStates: Int32Array;
  /** How many ops not yet linearized look at each value (get, cas); see memoValue. */
  private readonly readers: Int32Array;
  /** A value id that no op looks at. */
  private readonly unread: number;
  /** Twins placed so far, by class: always the first ones by rank. */
  private readonly twinsPlaced: Int32Array;
  private depth = 0;
  private state = ABSENT;
  private deepest: Deepest | null = null;
  private steps = 0;

  constructor(
    private readonly ops: readonly ModelOp[],
    valueCount: number,
    private readonly maxSteps: number,
  ) {
    this.unread = valueCount;
    this.twinsPlaced = new Int32Array(1 + Math.max(-1, ...ops.map((op) => op.twinClass)));
    this.readers = new Int32Array(valueCount);
    for (const op of ops) if (readsValue(op) >= 0) this.readers[readsValue(op)]!++;
    this.list = new EntryList(ops);
    this.linearized = new Bitset(ops.length);
    this.stackOps = new Int32Array(ops.length);
    this.stackStates = new Int32Array(ops.length);
  }

  run(): SearchOutcome {
    const list = this.list;
    let e = list.first();
    while (!list.isEmpty()) {
      if (++this.steps > this.maxSteps) return { kind: "timeout", steps: this.maxSteps };
      if (!EntryList.isCall(e)) {
        // A return entry: its op had to be linearized by now. Note how far we got, then backtrack.
        assert(e !== list.tail, () => "linearizability search walked off the end of the entry list");
        this.noteDeepest(e);
        e = this.backtrack();
      } else {
        const i = EntryList.opOf(e);
        const placed = this.tryLinearize(i);
        e = placed === "placed" ? list.first() : placed === "skip" ? list.next[e]! : this.backtrack();
      }
      if (e === NONE) return { kind: "violation", steps: this.steps, deepest: this.deepest! };
    }
    return { kind: "linearizable", steps: this.steps };
  }

  /**
   * Linearizes op i next if the model allows it and the result is new. A read that fits the value but leads
   * only to known dead ends is a dead end for its parent too (see backtrack).
   */
  private tryLinearize(i: number): "placed" | "skip" | "dead-end" {
    const op = this.ops[i]!;
    if (op.twinClass >= 0 && op.twinRank !== this.twinsPlaced[op.twinClass]) return "skip";
    const after = step(op, this.state);
    if (after === INVALID) return "skip";
    if (!firstVisit(this.seen, this.linearized.keyWith(i, this.memoValue(op, after)))) {
      return isRead(op) ? "dead-end" : "skip";
    }
    if (readsValue(op) >= 0) this.readers[readsValue(op)]!--;
    if (op.twinClass >= 0) this.twinsPlaced[op.twinClass]!++;
    this.linearized.set(i);
    this.stackOps[this.depth] = i;
    this.stackStates[this.depth++] = this.state;
    this.state = after;
    this.list.lift(i);
    return "placed";
  }

  /**
   * Undoes the last placement and returns the entry after it, to try the next candidate; NONE when nothing
   * is left. A read that fits the value can go first among the candidates without loss of generality (moving
   * it earlier changes no value, and no pending op must precede it), so when a read placed there fails, its
   * parent fails too and we keep unwinding.
   */
  private backtrack(): number {
    while (this.depth > 0) {
      const i = this.stackOps[--this.depth]!;
      this.state = this.stackStates[this.depth]!;
      this.linearized.clear(i);
      this.list.unlift(i);
      const op = this.ops[i]!;
      if (readsValue(op) >= 0) this.readers[readsValue(op)]!++;
      if (op.twinClass >= 0) this.twinsPlaced[op.twinClass]!--;
      if (!isRead(op)) return this.list.next[EntryList.callOf(i)]!;
    }
    return NONE;
  }

  /**
   * The value to memoize after `op` leaves `after`: itself, or `unread` when no op left looks at it. Every op
   * left then treats the two alike (a get or swap fails, a failed or unknown cas sees a mismatch), so the
   * configurations are equivalent; this merges the orders of concurrent writes that nobody reads.
   */
  private memoValue(op: ModelOp, after: number): number {
    const stillRead = this.readers[after]! - (readsValue(op) === after ? 1 : 0);
    return stillRead > 0 ? after : this.unread;
  }

  private noteDeepest(ret: number): void {
    if (this.deepest !== null && this.depth <= this.deepest.order.length) return;
    const candidates: number[] = [];
    for (let e = this.list.first(); e !== ret; e = this.list.next[e]!) candidates.push(EntryList.opOf(e));
    const order = Array.from(this.stackOps.subarray(0, this.depth));
    this.deepest = { order, state: this.state, blocking: EntryList.opOf(ret), candidates };
  }
}

/** Adds `key` to `seen`; true when it was not there before. */
function firstVisit(seen: Set<string>, key: string): boolean {
  if (seen.has(key)) return false;
  seen.add(key);
  return true;
}

/** The set of linearized ops; with a register value it is the memo key. */
class Bitset {
  private readonly words: Uint32Array;
  private readonly chars: number[];

  constructor(size: number) {
    this.words = new Uint32Array(Math.ceil(size / 32));
    this.chars = new Array<number>(2 * this.words.length + 2).fill(0);
  }

  set(i: number): void {
    this.words[i >> 5]! |= 1 << (i & 31);
  }

  clear(i: number): void {
    this.words[i >> 5]! &= ~(1 << (i & 31));
  }

  /** The memo key of this set plus op i, with register value `state`, as a string of 16-bit chars. */
  keyWith(i: number, state: number): string {
    const c = this.chars;
    const w = this.words;
    for (let k = 0; k < w.length; k++) {
      const word = k === i >> 5 ? w[k]! | (1 << (i & 31)) : w[k]!;
      c[2 * k] = word & 0xffff;
      c[2 * k + 1] = word >>> 16;
    }
    c[c.length - 2] = state & 0xffff;
    c[c.length - 1] = state >>> 16;
    return String.fromCharCode(...c);
  }
}

// ---- Quick checks: two common violations, found exactly and explained plainly before any search. ----

/** A quick, exact case: a get (or swapped cas) saw a value that no op that may have run ever wrote. */
function findUnwrittenRead(
  history: readonly HistoryOp[],
  key: string,
  prepared: PreparedKey,
): Violation | null {
  const written = new Set<number>([ABSENT]);
  for (const op of prepared.ops) if (changesValue(op)) written.add(op.value);
  for (const op of prepared.ops) {
    const seenValue = needsValue(op);
    if (seenValue < 0 || written.has(seenValue)) continue;
    const v = prepared.values[seenValue] ?? null;
    const failed = failedWritersOf(history, key, v);
    const why =
      failed.length === 0 ? "" : ` (only failed ops tried: ${failed.map((i) => `#${i + 1}`).join(", ")})`;
    const message =
      `key ${JSON.stringify(key)}: ${describeOp(history[op.index]!, op.index)} saw ${describeValue(v)}, ` +
      `a value no operation on this key ever wrote${why}.`;
    return { key, message, ops: [history[op.index]!], opIndexes: [op.index] };
  }
  return null;
}

/**
 * A quick, exact case (stale read, lost write): an op saw value v, but another write W of a different value
 * was called after every write of v had returned (after the start, for absent) and returned before the op
 * was called. Real time then orders the last write of v before W before the op, so it cannot see v.
 */
function findOverwrittenRead(
  history: readonly HistoryOp[],
  key: string,
  prepared: PreparedKey,
): Violation | null {
  const { ops, values } = prepared;
  const lastWriter = new Map<number, number>();
  ops.forEach((op, i) => {
    const prev = lastWriter.get(op.value);
    if (changesValue(op) && (prev === undefined || op.ret > ops[prev]!.ret)) lastWriter.set(op.value, i);
  });
  for (const r of ops) {
    const v = needsValue(r);
    if (v < 0) continue;
    const writer = lastWriter.get(v);
    const after = writer === undefined ? Number.NEGATIVE_INFINITY : ops[writer]!.ret;
    const w = ops.find((w) => certainlyWrites(w) && w.value !== v && w.call > after && w.ret < r.call);
    if (w === undefined) continue;
    const show = (op: ModelOp): string => describeOp(history[op.index]!, op.index);
    const value = (id: number): string => describeValue(values[id] ?? null);
    const message = [
      `key ${JSON.stringify(key)}: ${show(r)} saw ${value(v)}, which was overwritten before it was called:`,
      writer === undefined
        ? `    (${value(v)} is the initial state, and no op deletes the key)`
        : `    ${show(ops[writer]!)}: the last write of it to return${boundNote(history, writer, ops)}`,
      `    ${show(w)}: called after that, wrote ${value(w.value)} and returned ` +
        `before #${r.index + 1} was called`,
    ].join("\n");
    const context = [writer === undefined ? -1 : ops[writer]!.index, w.index, r.index].filter((i) => i >= 0);
    return { key, message, ops: context.map((i) => history[i]!), opIndexes: context };
  }
  return null;
}

/** For an unknown-outcome write given a return time by prepareUnknownWrites: why it has one. */
function boundNote(history: readonly HistoryOp[], i: number, ops: readonly ModelOp[]): string {
  const op = ops[i]!;
  if (history[op.index]!.ok !== null) return "";
  const by = op.ret.toFixed(3);
  return ` (outcome unknown, but as the value's only writer it took effect by ${by}ms, when a read returned)`;
}

/** Puts, deletes and swaps with a known outcome, or bound to take effect (see prepareUnknownWrites). */
function certainlyWrites(op: ModelOp): boolean {
  const kind = op.kind === "put" || op.kind === "delete" || op.kind === "cas-swapped";
  return kind && op.ret !== Number.POSITIVE_INFINITY;
}

function failedWritersOf(history: readonly HistoryOp[], key: string, value: string | null): number[] {
  const found: number[] = [];
  history.forEach((op, i) => {
    if (op.key === key && op.ok === false && op.value === value && op.op !== "get") found.push(i);
  });
  return found;
}

// ---- Explaining a violation the search found. ----

const MAX_PREFIX_SHOWN = 3;
const MAX_CANDIDATES_SHOWN = 8;
const MAX_WRITERS_SHOWN = 3;

function explain(history: readonly HistoryOp[], key: string, prepared: PreparedKey, d: Deepest): Violation {
  const { ops, values } = prepared;
  const show = (i: number): string => describeOp(history[ops[i]!.index]!, ops[i]!.index);
  const value = (id: number): string => describeValue(values[id] ?? null);
  const prefix = d.order.slice(-MAX_PREFIX_SHOWN);
  const candidates = [...d.candidates]
    .sort((a, b) => ops[a]!.call - ops[b]!.call)
    .slice(0, MAX_CANDIDATES_SHOWN);
  const writes = relevantWrites(ops, d.blocking);
  const lines = [
    `key ${JSON.stringify(key)}: no linearization of its ${ops.length} operations exists.`,
    d.order.length === 0
      ? `Starting from ${value(ABSENT)}, no order works.`
      : `The longest valid order found places ${d.order.length} of them, ending with:\n` +
        prefix.map((i) => `    ${show(i)}\n`).join("") +
        `  which leaves the key ${value(d.state)}.`,
    `Then ${show(d.blocking)} must take effect before it returns, but no pending op can go next:`,
    ...candidates.map((i) => `    ${show(i)}: ${whyNotNext(ops[i]!, d.state, value)}`),
  ];
  if (d.candidates.length > candidates.length) {
    lines.push(`    ... and ${d.candidates.length - candidates.length} more`);
  }
  if (writes.length > 0)
    lines.push("Related writes:", ...writes.map(({ i, why }) => `    ${show(i)}: ${why}`));
  const context = [...new Set([...prefix, ...candidates, ...writes.map((w) => w.i)])]
    .map((i) => ops[i]!.index)
    .sort((a, b) => history[a]!.call - history[b]!.call);
  return { key, message: lines.join("\n"), ops: context.map((i) => history[i]!), opIndexes: context };
}

/** For the blocking op: a few writes of the value it saw, and the last write to return before its call. */
function relevantWrites(ops: readonly ModelOp[], blocking: number): { i: number; why: string }[] {
  const b = ops[blocking]!;
  const seen = needsValue(b);
  const writes: { i: number; why: string }[] = [];
  let lastDone = -1;
  ops.forEach((op, i) => {
    if (!changesValue(op)) return;
    if (op.value === seen && writes.length < MAX_WRITERS_SHOWN)
      writes.push({ i, why: "wrote the value it saw" });
    if (op.ret < b.call && (lastDone < 0 || op.ret > ops[lastDone]!.ret)) lastDone = i;
  });
  const last = writes.find((w) => w.i === lastDone);
  if (last !== undefined) last.why += "; the last write to return before it was called";
  else if (lastDone >= 0) writes.push({ i: lastDone, why: "the last write to return before it was called" });
  return writes;
}

function whyNotNext(op: ModelOp, state: number, value: (id: number) => string): string {
  const after = step(op, state);
  if (after !== INVALID) return `could go next (leaving ${value(after)}), but no valid order follows`;
  switch (op.kind) {
    case "get":
      return `it read ${value(op.value)}, but the key is ${value(state)}`;
    case "cas-swapped":
      return `it swapped, so it saw ${value(op.expected)}, but the key is ${value(state)}`;
    case "cas-not-swapped":
      return `it did not swap, so it saw something other than ${value(op.expected)}, but the key is that`;
    case "put":
    case "delete":
    case "cas-unknown":
      return "cannot go next";
  }
}
