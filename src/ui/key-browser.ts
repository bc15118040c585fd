// The dashboard's key browser: prefix search with paging, one value in full (up to a bound), and put and
// delete (the page offers them behind a switch; each call carries the WRITE_HEADER). Values travel as
// base64; the page shows them as text, pretty JSON or hex.

import type { IncomingMessage, ServerResponse } from "node:http";
import { RaftKvError } from "../lib/errors.ts";
import type { Consistency } from "../replica/replica.ts";
import type { KvOps } from "../server/kv-ops.ts";

/** The KV operations the browser uses. */
export type KeyOps = Pick<KvOps, "range" | "get" | "put" | "delete">;

export const MAX_PAGE_KEYS = 200;
const DEFAULT_PAGE_KEYS = 50;
/** Bytes of each value sent with a page of keys (a preview). */
export const PREVIEW_BYTES = 256;
/** Bytes of a page of keys read at most. */
const PAGE_MAX_BYTES = 1024 * 1024;
/** Bytes of one value shown in full at most. */
export const VIEW_MAX_BYTES = 256 * 1024;

const CONSISTENCIES: readonly Consistency[] = ["stale", "lease", "readIndex"];

export type Reply = (status: number, body: unknown) => void;

function consistencyOf(q: URLSearchParams): Consistency {
  const c = q.get("consistency") ?? "stale";
  if (!(CONSISTENCIES as readonly string[]).includes(c))
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message: `consistency must be one of ${CONSISTENCIES.join(", ")}, got "${c}"`,
    });
  return c as Consistency;
}

function keyOf(q: URLSearchParams): string {
  const key = q.get("key");
  if (key === null || key === "")
    throw new RaftKvError({ code: "INVALID_ARGUMENT", message: "give the key as ?key=..." });
  return key;
}

export async function listKeys(ops: KeyOps, q: URLSearchParams): Promise<unknown> {
  const limitText = q.get("limit") ?? String(DEFAULT_PAGE_KEYS);
  const limit = Number(limitText);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_PAGE_KEYS)
    throw new RaftKvError({
      code: "INVALID_ARGUMENT",
      message: `limit must be 1..${MAX_PAGE_KEYS}, got "${limitText}"`,
    });
  const after = q.get("after");
  const consistency = consistencyOf(q);
  const r = await ops.range(q.get("prefix") ?? "", limit, consistency, after ?? undefined, PAGE_MAX_BYTES);
  const entries = r.entries.map((e) => ({
    key: e.key,
    sizeBytes: e.value.length,
    preview: Buffer.from(e.value.subarray(0, PREVIEW_BYTES)).toString("base64"),
  }));
  return {
    entries,
    more: r.more,
    next: r.more ? (entries[entries.length - 1]?.key ?? null) : null,
    consistency,
  };
}

export async function getKey(ops: KeyOps, q: URLSearchParams): Promise<unknown> {
  const key = keyOf(q);
  const v = await ops.get(key, consistencyOf(q));
  if (v === null) return { key, found: false };
  return {
    key,
    found: true,
    sizeBytes: v.length,
    truncated: v.length > VIEW_MAX_BYTES,
    value: Buffer.from(v.subarray(0, VIEW_MAX_BYTES)).toString("base64"),
  };
}

export async function putKey(
  ops: KeyOps,
  q: URLSearchParams,
  req: IncomingMessage,
  maxValueBytes: number,
): Promise<unknown> {
  const key = keyOf(q);
  const value = await readBody(req, maxValueBytes);
  const { revision } = await ops.put(key, value);
  return { key, revision };
}

export async function deleteKey(ops: KeyOps, q: URLSearchParams): Promise<unknown> {
  const key = keyOf(q);
  const { revision } = await ops.delete(key);
  return { key, revision };
}

/** The request body, refused beyond maxBytes (the request is then drained, not buffered). */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBytes && !failed) {
        failed = true;
        reject(
          new RaftKvError({
            code: "TOO_LARGE",
            message: `the value is over maxValueBytes (${maxBytes} bytes)`,
          }),
        );
      }
      if (!failed) chunks.push(c);
    });
    req.on("end", () => {
      if (!failed) resolve(new Uint8Array(Buffer.concat(chunks)));
    });
    req.on("error", (err) => {
      if (!failed) reject(err);
    });
  });
}

/** HTTP status and JSON body for a failed call: the error's code and message, and the leader's id. */
export function errorReply(err: unknown): { status: number; body: unknown } {
  if (!(err instanceof RaftKvError))
    return {
      status: 500,
      body: { code: "INTERNAL", error: err instanceof Error ? err.message : String(err) },
    };
  const status =
    err.code === "INVALID_ARGUMENT" || err.code === "TOO_LARGE"
      ? 400
      : err.code === "NOT_LEADER" || err.code === "NO_LEADER"
        ? 409
        : 503;
  const leaderId = (err as { leaderId?: unknown }).leaderId;
  return {
    status,
    body: { code: err.code, error: err.message, leaderId: typeof leaderId === "number" ? leaderId : null },
  };
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string>,
): void {
  res.writeHead(status, { ...headers, "content-type": "application/json", "cache-control": "no-store" });
  res.end(`${JSON.stringify(body)}\n`);
}
