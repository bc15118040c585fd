// The client-operation history (history.jsonl): the HistoryOp type, its validating parser, how an op prints.

import { RaftKvError } from "../lib/errors.ts";

export type OpKind = "put" | "get" | "delete" | "cas";

/**
 * One client operation, as recorded by a client and written one per line to history.jsonl.
 * `call` and `return` are on one monotonic clock, in milliseconds (floats).
 */
export interface HistoryOp {
  readonly client: number;
  readonly op: OpKind;
  readonly key: string;
  /** The value written by put and cas; null for get and delete. */
  readonly value: string | null;
  /** cas only: the value the key must hold, null meaning "the key must be absent"; null for other ops. */
  readonly expected: string | null;
  readonly call: number;
  /** Null when the outcome is unknown (a timeout): the op may take effect any time after `call`, or never. */
  readonly return: number | null;
  /** true: took effect (and returned `result`); false: certainly did not take effect; null: unknown. */
  readonly ok: boolean | null;
  /** get: the value read (null when absent); cas: whether it swapped; null otherwise and unless ok:true. */
  readonly result: string | boolean | null;
}

const OP_KINDS: readonly OpKind[] = ["put", "get", "delete", "cas"];

/** Parses history.jsonl text (blank lines allowed), rejecting the first bad line with its line number. */
export function parseHistoryJsonl(text: string, source = "history"): HistoryOp[] {
  const ops: HistoryOp[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").trim();
    if (line === "") continue;
    const where = `${source}:${i + 1}`;
    ops.push(parseHistoryOp(parseJson(line, where), where));
  }
  return ops;
}

/** Turns one decoded JSON value into a HistoryOp, or throws INVALID_ARGUMENT naming `where` and the field. */
export function parseHistoryOp(json: unknown, where: string): HistoryOp {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return reject(where, "an operation must be a JSON object");
  }
  const o = json as Record<string, unknown>;
  const op: HistoryOp = {
    client: field(o, "client", where, isInteger, "an integer"),
    op: field(o, "op", where, isOpKind, `one of ${OP_KINDS.join(", ")}`),
    key: field(o, "key", where, isString, "a string"),
    value: field(o, "value", where, isStringOrNull, "a string or null"),
    expected: field(o, "expected", where, isStringOrNull, "a string or null"),
    call: field(o, "call", where, isFiniteNumber, "a finite number (ms)"),
    return: field(o, "return", where, isFiniteNumberOrNull, "a finite number (ms) or null"),
    ok: field(o, "ok", where, isBooleanOrNull, "true, false or null"),
    result: field(o, "result", where, isResult, "a string, a boolean or null"),
  };
  checkConsistent(op, where);
  return op;
}

/** One line of history.jsonl for `op` (the writer's half of the format). */
export function formatHistoryLine(op: HistoryOp): string {
  const { client, key, value, expected, call, ok, result } = op;
  return JSON.stringify({ client, op: op.op, key, value, expected, call, return: op.return, ok, result });
}

/** A one-line description for people: `#12 client 3 put k7="v" [10.250, 11.000]ms ok`. */
export function describeOp(op: HistoryOp, index: number): string {
  const end = op.return === null ? "?" : op.return.toFixed(3);
  const times = `[${op.call.toFixed(3)}, ${end}]ms`;
  return `#${index + 1} client ${op.client} ${describeAction(op)} ${times} ${describeOutcome(op)}`;
}

/** A value as people read it: quoted, or "absent" for null. */
export function describeValue(value: string | null): string {
  return value === null ? "absent" : JSON.stringify(value);
}

function describeAction(op: HistoryOp): string {
  switch (op.op) {
    case "put":
      return `put ${op.key}=${describeValue(op.value)}`;
    case "get":
      return `get ${op.key}`;
    case "delete":
      return `delete ${op.key}`;
    case "cas":
      return `cas ${op.key} ${describeValue(op.expected)}->${describeValue(op.value)}`;
  }
}

function describeOutcome(op: HistoryOp): string {
  if (op.ok === null) return "outcome unknown";
  if (!op.ok) return "failed";
  if (op.op === "get") return `-> ${describeValue(op.result as string | null)}`;
  if (op.op === "cas") return op.result === true ? "-> swapped" : "-> not swapped";
  return "ok";
}

/** The rules between fields that the types alone cannot say. */
function checkConsistent(op: HistoryOp, where: string): void {
  if (op.return !== null && op.return < op.call)
    reject(where, `return ${op.return} is before call ${op.call}`);
  if (op.ok === true && op.return === null) reject(where, "ok:true needs a return time");
  if (op.ok === null && op.return !== null) {
    reject(where, "ok:null (unknown outcome) must have return:null; record a known outcome as ok:true/false");
  }
  if ((op.op === "put" || op.op === "cas") && op.value === null)
    reject(where, `${op.op} needs a string value`);
  if ((op.op === "get" || op.op === "delete") && op.value !== null)
    reject(where, `${op.op} takes value:null`);
  if (op.op !== "cas" && op.expected !== null) reject(where, "only cas takes an expected value");
  checkResult(op, where);
}

function checkResult(op: HistoryOp, where: string): void {
  if (op.ok !== true || op.op === "put" || op.op === "delete") {
    if (op.result !== null) {
      reject(
        where,
        "result must be null unless a get or cas returned " +
          "(a cas that saw another value has ok:true, result:false)",
      );
    }
    return;
  }
  if (op.op === "get" && typeof op.result === "boolean") reject(where, "a get's result is a string or null");
  if (op.op === "cas" && typeof op.result !== "boolean") reject(where, "a cas's result is true or false");
}

function field<T>(
  o: Record<string, unknown>,
  name: string,
  where: string,
  is: (v: unknown) => v is T,
  expectation: string,
): T {
  if (!(name in o)) return reject(where, `missing field "${name}"`);
  const v = o[name];
  if (!is(v)) return reject(where, `field "${name}" must be ${expectation}, got ${shown(v)}`);
  return v;
}

/** A rejected value for the error message: bounded, and never throwing (JSON.stringify overflows the
 *  stack on deeply nested arrays, which JSON.parse accepts). */
function shown(v: unknown): string {
  let text: string;
  try {
    text = JSON.stringify(v);
  } catch {
    return Array.isArray(v) ? "a deeply nested array" : "a deeply nested object";
  }
  return text.length > 80 ? `${text.slice(0, 80)}…` : text;
}

function parseJson(line: string, where: string): unknown {
  try {
    return JSON.parse(line);
  } catch (e) {
    return reject(where, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function reject(where: string, why: string): never {
  throw new RaftKvError({
    code: "INVALID_ARGUMENT",
    message: `${where}: ${why}`,
    hint: "fix the history writer; see HistoryOp in src/sim/history.ts for the format",
  });
}

const isString = (v: unknown): v is string => typeof v === "string";
const isStringOrNull = (v: unknown): v is string | null => v === null || typeof v === "string";
const isInteger = (v: unknown): v is number => Number.isSafeInteger(v);
const isFiniteNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isFiniteNumberOrNull = (v: unknown): v is number | null => v === null || isFiniteNumber(v);
const isBooleanOrNull = (v: unknown): v is boolean | null => v === null || typeof v === "boolean";
const isResult = (v: unknown): v is string | boolean | null => isStringOrNull(v) || typeof v === "boolean";
const isOpKind = (v: unknown): v is OpKind =>
  typeof v === "string" && (OP_KINDS as readonly string[]).includes(v);
