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

/** One line on stderr naming the command, the code and what to do; with `json`, one JSON object on
 *  stdout instead: {"ok":false,"error":{"code","message","hint","nodeId","endpoint"}}. */
export function printError(command: string, err: unknown, json = false): void {
  if (json) {
    printJson({ ok: false, command, error: errorJson(err) });
    return;
  }
  const text =
    err instanceof RaftKvError
      ? err.message
      : err instanceof Error
        ? `INTERNAL: ${err.message}; this is a bug in raftkv, please report it`
        : `INTERNAL: ${String(err)}`;
  process.stderr.write(`raftkv ${command}: ${text.replace(/\s*\n\s*/g, " ")}\n`);
}

/** An error as JSON: the code, what failed and what to do as separate fields. */
export function errorJson(err: unknown): Record<string, unknown> {
  if (!(err instanceof RaftKvError))
    return {
      code: "INTERNAL",
      message: err instanceof Error ? err.message : String(err),
      hint: "this is a bug in raftkv, please report it",
    };
  let message = err.message;
  if (message.startsWith(`${err.code}: `)) message = message.slice(err.code.length + 2);
  if (err.hint !== undefined && message.endsWith(`; ${err.hint}`))
    message = message.slice(0, message.length - err.hint.length - 2);
  const endpoint = "endpoint" in err && typeof err.endpoint === "string" ? err.endpoint : undefined;
  return {
    code: err.code,
    message,
    ...(err.hint === undefined ? {} : { hint: err.hint }),
    ...(err.nodeId === undefined ? {} : { nodeId: err.nodeId }),
    ...(endpoint === undefined ? {} : { endpoint }),
  };
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
