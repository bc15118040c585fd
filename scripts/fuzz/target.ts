// The fuzz target contract: valid seeds, how to mutate them, and the verdict on one input.

import type { Prng } from "../../src/lib/prng.ts";

export const TARGET_NAMES = ["codec", "command", "snapshot", "wal", "history", "proto", "stream"] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

/** What one input did. `label` is a short class (a refusal reason, "accepted/append"...) for stats and
 *  for keeping inputs that reach an outcome not seen before. */
export type Outcome =
  | { readonly kind: "accepted"; readonly label: string }
  | { readonly kind: "refused"; readonly label: string }
  | Finding;

/** An input broke an invariant. `invariant` plus `signature` name the bug (findings are deduplicated
 *  on them); `detail` says what happened; `stack` is the thrown error's, when one was thrown. */
export interface Finding {
  readonly kind: "finding";
  readonly invariant: string;
  readonly signature: string;
  readonly detail: string;
  readonly stack?: string;
}

export interface FuzzTarget {
  readonly name: TargetName;
  /** Valid (or deliberately interesting) inputs to start from. Deterministic for a given prng state. */
  seeds(prng: Prng): Uint8Array[] | Promise<Uint8Array[]>;
  /** One mutated input from `input`; `other` is a second corpus member for splicing. */
  mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array;
  /** Runs the input through the code under test and checks the invariants. Must not throw. */
  run(input: Uint8Array): Outcome | Promise<Outcome>;
  /** How to read an input in a replay report (hex by default). */
  describe?(input: Uint8Array): string;
}

export function finding(invariant: string, detail: string, error?: unknown): Finding {
  const stack = error instanceof Error ? error.stack : undefined;
  return {
    kind: "finding",
    invariant,
    signature: `${invariant}: ${signatureOf(error ?? detail)}`,
    detail,
    ...(stack === undefined ? {} : { stack }),
  };
}

/** A stable name for a failure: the error's class and message with numbers and quoted text elided,
 *  plus its first stack frame, so one bug with many inputs counts once. */
export function signatureOf(e: unknown): string {
  if (!(e instanceof Error)) return normalize(String(e));
  const frame = e.stack?.split("\n").find((l) => l.trimStart().startsWith("at "));
  const where = frame === undefined ? "" : ` ${frame.trim().replace(/:\d+:\d+\)?$/, "")}`;
  return `${e.name}: ${normalize(e.message)}${where}`;
}

function normalize(s: string): string {
  return s
    .replace(/"(?:[^"\\]|\\.)*"/g, '"…"')
    .replace(/-?\d+(\.\d+)?(e[+-]?\d+)?/gi, "N")
    .slice(0, 160);
}

export function errorText(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : `non-Error thrown: ${String(e)}`;
}

export function hex(bytes: Uint8Array, max = 4096): string {
  const shown = bytes.subarray(0, max);
  const text = Array.from(shown, (b) => b.toString(16).padStart(2, "0")).join("");
  return bytes.length > max ? `${text}… (${bytes.length} bytes)` : text;
}
