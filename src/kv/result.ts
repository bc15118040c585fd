// What applying a command returns, and its binary form (cached results travel in snapshots).

import { assert, unreachable } from "../lib/assert.ts";
import type { ByteReader, ByteWriter } from "./bytes.ts";
import { utf8ByteLength } from "./utf8.ts";

/** `revision` is the log index that applied the write. */
export interface PutResult {
  readonly type: "put";
  readonly revision: number;
}

export interface DeleteResult {
  readonly type: "delete";
  readonly revision: number;
  /** Whether the key existed before the delete. */
  readonly existed: boolean;
}

export interface CasResult {
  readonly type: "cas";
  readonly revision: number;
  readonly succeeded: boolean;
  /** The key's value after the command: the new value (or null) on success, the unchanged one on failure. */
  readonly current: Uint8Array | null;
}

/** A command that could not run: undecodable bytes or a stale session sequence number. */
export interface ErrorResult {
  readonly type: "error";
  readonly message: string;
}

export type KvResult = PutResult | DeleteResult | CasResult | ErrorResult;

const TAG_PUT = 1;
const TAG_DELETE = 2;
const TAG_CAS = 3;
const TAG_ERROR = 4;

export function resultSize(r: KvResult): number {
  switch (r.type) {
    case "put":
      return 1 + 8;
    case "delete":
      return 1 + 8 + 1;
    case "cas":
      return 1 + 8 + 1 + 1 + (r.current === null ? 0 : 4 + r.current.length);
    case "error":
      return 1 + 4 + messageBytes(r.message);
    default:
      return unreachable(r);
  }
}

export function writeResult(w: ByteWriter, r: KvResult): void {
  switch (r.type) {
    case "put":
      w.u8(TAG_PUT);
      w.u64(r.revision);
      return;
    case "delete":
      w.u8(TAG_DELETE);
      w.u64(r.revision);
      w.u8(r.existed ? 1 : 0);
      return;
    case "cas":
      w.u8(TAG_CAS);
      w.u64(r.revision);
      w.u8(r.succeeded ? 1 : 0);
      w.u8(r.current === null ? 0 : 1);
      if (r.current !== null) {
        w.u32(r.current.length);
        w.raw(r.current);
      }
      return;
    case "error":
      w.u8(TAG_ERROR);
      w.u32(messageBytes(r.message));
      w.utf8(r.message, messageBytes(r.message));
      return;
    default:
      unreachable(r);
  }
}

export function readResult(r: ByteReader): KvResult {
  const tag = r.u8("result tag");
  switch (tag) {
    case TAG_PUT:
      return { type: "put", revision: r.u64("revision") };
    case TAG_DELETE:
      return { type: "delete", revision: r.u64("revision"), existed: r.boolean("existed") };
    case TAG_CAS: {
      const revision = r.u64("revision");
      const succeeded = r.boolean("succeeded");
      const current = r.boolean("current present") ? r.copy(r.u32("current length"), "current") : null;
      return { type: "cas", revision, succeeded, current };
    }
    case TAG_ERROR:
      return { type: "error", message: r.utf8(r.u32("message length"), "message") };
    default:
      throw r.corrupt(`unknown result tag ${tag}`);
  }
}

function messageBytes(message: string): number {
  const bytes = utf8ByteLength(message);
  assert(bytes >= 0, () => `error message is not well-formed: ${JSON.stringify(message)}`);
  return bytes;
}
