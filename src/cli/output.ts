// What the CLI prints: one-line errors, exit codes, tables, and values as text or JSON.

import { RaftKvError } from "../lib/errors.ts";

/** Exit codes of every raftkv command. */
export const EXIT = {
  ok: 0,
  /** The request failed (unreachable, no leader, deadline, node error). */
  failed: 1,
  /** Bad usage or a bad argument (including INVALID_ARGUMENT, TOO_LARGE and CONFIG from a node). */
  usage: 2,
  /** `get`: the key does not exist; `cas`: the comparison failed. */
  notFound: 3,
} as const;

/** Exit code for an error thrown by a command. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof RaftKvError)
    return err.code === "INVALID_ARGUMENT" || err.code === "TOO_LARGE" || err.code === "CONFIG"
      ? EXIT.usage
      : EXIT.failed;
  return EXIT.failed;
}

/** One line on stderr naming the command, the code and what to do. */
export function printError(command: string, err: unknown): void {
  const text =
    err instanceof RaftKvError
      ? err.message
      : err instanceof Error
        ? `INTERNAL: ${err.message}; this is a bug in raftkv, please report it`
        : `INTERNAL: ${String(err)}`;
  process.stderr.write(`raftkv ${command}: ${text.replace(/\s*\n\s*/g, " ")}\n`);
}

/** A usage error as a typed error (exit code 2). */
export function usageError(message: string, hint: string): RaftKvError {
  return new RaftKvError({ code: "INVALID_ARGUMENT", message, hint });
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? Number(x) : x))}\n`);
}

/** A plain text table: a header row, then rows, columns padded to the widest cell. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}
