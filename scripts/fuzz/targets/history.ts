// Fuzz target "history": parseHistoryJsonl throws only INVALID_ARGUMENT RaftKvErrors naming the line,
// and every operation it accepts is consistent and prints back to a line that parses to itself.

import { RaftKvError } from "../../../src/lib/errors.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import { formatHistoryLine, type HistoryOp, parseHistoryJsonl } from "../../../src/sim/history.ts";
import { mutateBytes } from "../mutate.ts";
import { errorText, type FuzzTarget, finding, type Outcome } from "../target.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder(); // replacement characters, as readFileSync(path, "utf8") does

function randomOp(prng: Prng, client: number, call: number): HistoryOp {
  const key = `k${prng.int(0, 3)}`;
  const value = `v${prng.int(0, 99)}`;
  const returned = prng.chance(0.1) ? null : call + prng.next() * 5;
  const ok = returned === null ? null : prng.chance(0.9);
  const base = { client, key, call, return: returned, ok, expected: null, value: null, result: null };
  switch (prng.int(0, 3)) {
    case 0:
      return { ...base, op: "put", value };
    case 1:
      return { ...base, op: "get", result: ok === true && prng.chance(0.7) ? value : null };
    case 2:
      return { ...base, op: "delete" };
    default:
      return {
        ...base,
        op: "cas",
        value,
        expected: prng.chance(0.3) ? null : `v${prng.int(0, 99)}`,
        result: ok === true ? prng.chance(0.5) : null,
      };
  }
}

function seeds(prng: Prng): Uint8Array[] {
  return Array.from({ length: 100 }, () => {
    const lines: string[] = [];
    let call = prng.next() * 10;
    for (let i = prng.int(1, 12); i > 0; i--) {
      lines.push(formatHistoryLine(randomOp(prng, prng.int(0, 4), call)));
      call += prng.next() * 3;
    }
    return encoder.encode(`${lines.join("\n")}${prng.chance(0.5) ? "\n" : ""}`);
  });
}

/** JSON texts that stress a field: numbers past the safe and finite ranges, -0, wrong types, lone
 *  surrogates, deep nesting, very long strings. */
const ODD_VALUES = [
  "0",
  "-0",
  "-1",
  "1.5",
  "1e308",
  "1e309",
  "-1e309",
  "9007199254740991",
  "9007199254740993",
  "18446744073709551615",
  "true",
  "false",
  "null",
  '""',
  '"\\ud800"',
  '"\\u0000"',
  '"put"',
  '"get"',
  '"cas"',
  '"delete"',
  '"PUT"',
  "{}",
  "[]",
  '{"__proto__":{"client":1}}',
  "[".repeat(5000) + "]".repeat(5000),
  `"${"x".repeat(100000)}"`,
];
const FIELDS = [
  "client",
  "op",
  "key",
  "value",
  "expected",
  "call",
  "return",
  "ok",
  "result",
  "__proto__",
  "extra",
];

/** A field of one line replaced, removed or duplicated, as JSON text. */
function mutateLine(line: string, prng: Prng): string {
  let o: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return line;
    o = parsed as Record<string, unknown>;
  } catch {
    return line;
  }
  const name = prng.pick(FIELDS);
  const parts = Object.entries(o)
    .filter(([k]) => k !== name)
    .map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  const choice = prng.int(0, 3);
  if (choice > 0)
    parts.splice(prng.int(0, parts.length), 0, `${JSON.stringify(name)}:${prng.pick(ODD_VALUES)}`);
  if (choice === 3 && name in o) parts.push(`${JSON.stringify(name)}:${JSON.stringify(o[name])}`);
  return `{${parts.join(",")}}`;
}

function mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  if (prng.chance(0.4)) return mutateBytes(input, other, prng);
  const lines = decoder.decode(input).split("\n");
  const i = prng.int(0, Math.max(0, lines.length - 1));
  switch (prng.int(0, 5)) {
    case 0: // duplicate a line
      lines.splice(prng.int(0, lines.length), 0, lines[i] ?? "");
      break;
    case 1: // swap two lines
      [lines[i], lines[0]] = [lines[0] ?? "", lines[i] ?? ""];
      break;
    case 2: // line endings and blank lines
      lines[i] =
        `${prng.pick(["", " ", "\r", "\t"])}${lines[i] ?? ""}${prng.pick(["", "\r", " ", "\u2028"])}`;
      break;
    default:
      lines[i] = mutateLine(lines[i] ?? "", prng);
  }
  return encoder.encode(lines.join("\n"));
}

function run(input: Uint8Array): Outcome {
  const text = decoder.decode(input);
  let ops: HistoryOp[];
  try {
    ops = parseHistoryJsonl(text, "fuzz.jsonl");
  } catch (e) {
    if (
      e instanceof RaftKvError &&
      e.code === "INVALID_ARGUMENT" &&
      /^INVALID_ARGUMENT: fuzz\.jsonl:\d+: /.test(e.message)
    )
      return {
        kind: "refused",
        label: e.message
          .replace(/fuzz\.jsonl:\d+: /, "")
          .replace(/got .*/, "got …")
          .replace(/\d+/g, "N")
          .slice(0, 90),
      };
    return finding("history-bad-error", `parseHistoryJsonl threw ${errorText(e)}`, e);
  }
  try {
    for (const op of ops) {
      const line = formatHistoryLine(op);
      const [again] = parseHistoryJsonl(line, "reprinted");
      if (again === undefined || formatHistoryLine(again) !== line)
        return finding(
          "history-reprint",
          `an accepted op prints as ${line.slice(0, 200)}, which parses differently`,
        );
    }
  } catch (e) {
    return finding("history-reprint", `an accepted op does not parse once printed: ${errorText(e)}`, e);
  }
  return { kind: "accepted", label: ops.length === 0 ? "empty" : "ops" };
}

export const historyTarget: FuzzTarget = {
  name: "history",
  seeds,
  mutate,
  run,
  describe: (input) => `text ${JSON.stringify(decoder.decode(input)).slice(0, 4000)}`,
};
