// CLI: checks a history.jsonl file for linearizability and prints the verdict (exit 0 ok, 1 violation).
//
// Usage: npx tsx src/sim/check-history.ts [--max-steps-per-key N] [--json] <history.jsonl>
// Exit codes: 0 linearizable; 1 not linearizable; 2 unknown (a key's search budget ran out);
// 3 the file could not be read or is not a valid history.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RaftKvError } from "../lib/errors.ts";
import { parseHistoryJsonl } from "./history.ts";
import { type CheckResult, checkHistory, DEFAULT_MAX_STEPS_PER_KEY } from "./linearizability.ts";

const USAGE = "usage: check-history [--max-steps-per-key N] [--json] <history.jsonl>";
/** TESTING.md: a run with more unknown outcomes than this is too weak to count. */
const MAX_UNKNOWN_FRACTION = 0.2;

const EXIT = { linearizable: 0, "not-linearizable": 1, unknown: 2, badInput: 3 } as const;

function main(argv: readonly string[]): number {
  const args = parseCli(argv);
  if (typeof args === "string") return fail(`${args}\n${USAGE}`);
  let text: string;
  try {
    text = readFileSync(args.path, "utf8");
  } catch (e) {
    return fail(`cannot read ${args.path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  let history: ReturnType<typeof parseHistoryJsonl>;
  try {
    history = parseHistoryJsonl(text, args.path);
  } catch (e) {
    if (e instanceof RaftKvError) return fail(e.message);
    throw e;
  }
  const startMs = performance.now();
  const result = checkHistory(history, { maxStepsPerKey: args.maxStepsPerKey });
  const elapsedMs = performance.now() - startMs;
  if (args.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(report(args.path, history.length, result, elapsedMs, args.maxStepsPerKey));
  return EXIT[result.verdict];
}

interface CliArgs {
  readonly path: string;
  readonly maxStepsPerKey: number;
  readonly json: boolean;
}

/** The parsed arguments, or what is wrong with them. */
function parseCli(argv: readonly string[]): CliArgs | string {
  let parsed: ReturnType<typeof parseCliArgs>;
  try {
    parsed = parseCliArgs(argv);
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
  const { values, positionals } = parsed;
  if (positionals.length !== 1) return "give exactly one history file";
  const maxStepsPerKey = Number(values["max-steps-per-key"] ?? DEFAULT_MAX_STEPS_PER_KEY);
  if (!Number.isSafeInteger(maxStepsPerKey) || maxStepsPerKey <= 0) {
    return "--max-steps-per-key must be a positive integer";
  }
  return { path: positionals[0]!, maxStepsPerKey, json: values.json === true };
}

function parseCliArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { "max-steps-per-key": { type: "string" }, json: { type: "boolean" } },
  });
}

function report(path: string, opCount: number, r: CheckResult, elapsedMs: number, maxSteps: number): string {
  const unknownPct = opCount === 0 ? 0 : (100 * r.opsUnknownOutcome) / opCount;
  const lines = [
    `${path}: ${plural(opCount, "op")} on ${plural(r.keysChecked, "key")}; ${r.opsChecked} checked, ` +
      `${r.opsUnknownOutcome} with unknown outcome (${unknownPct.toFixed(1)}%); ` +
      `${r.steps} search steps in ${elapsedMs.toFixed(0)} ms`,
  ];
  for (const v of r.violations) lines.push("", v.message);
  if (r.timedOutKeys.length > 0) {
    lines.push(
      "",
      `search budget (${maxSteps} steps per key) ran out on: ${r.timedOutKeys.join(", ")}; ` +
        "raise --max-steps-per-key to decide them",
    );
  }
  if (unknownPct > 100 * MAX_UNKNOWN_FRACTION) {
    lines.push(
      "",
      `warning: over ${100 * MAX_UNKNOWN_FRACTION}% of ops have unknown outcomes: too weak to count`,
    );
  }
  lines.push("", `verdict: ${verdictLine(r)}`);
  return `${lines.join("\n")}\n`;
}

function verdictLine(r: CheckResult): string {
  switch (r.verdict) {
    case "linearizable":
      return "linearizable";
    case "not-linearizable":
      return `NOT linearizable (${r.violations.length} of ${r.keysChecked} keys)`;
    case "unknown":
      return `unknown (no violation found, but ${r.timedOutKeys.length} keys undecided)`;
  }
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
}

function fail(message: string): number {
  process.stderr.write(`check-history: ${message}\n`);
  return EXIT.badInput;
}

process.exitCode = main(process.argv.slice(2));
