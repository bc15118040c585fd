// KV commands and their binary encoding: the bytes a Raft log entry carries as `Entry.data`.
//
// Format v1, little-endian:
//   u8 version (=1) | u8 op (1 put, 2 delete, 3 cas) | u8 flags (bit0 session, bit1 cas expected
//   present, bit2 cas value present) | [session: u8 clientIdLen, clientId UTF-8, u64 seq] |
//   u32 keyLen, key UTF-8 | put: u32 len, value | cas: [u32 len, expected] [u32 len, value]
// Nothing may follow. Key and value size limits are checked on encode (at proposal time) but not on
// decode: apply must give the same answer on every replica whatever its local configuration.
// Op 16 (OP_MVCC) is an MVCC command, encoded by mvcc-codec.ts after the version and op bytes;
// decodeCommand refuses it (the store state machine dispatches on it first).

import { unreachable } from "../lib/assert.ts";
import type { RaftKvError } from "../lib/errors.ts";
import { ByteReader, ByteWriter } from "./bytes.ts";
import {
  DEFAULT_KV_LIMITS,
  type KvLimits,
  MAX_CLIENT_ID_BYTES,
  validateClientId,
  validateKey,
  validateSeq,
  validateValue,
} from "./limits.ts";
import { utf8ByteLength } from "./utf8.ts";

/** Client session for exactly-once writes (thesis §6.3): `seq` counts up from 1 per `clientId`. */
export interface ClientSession {
  readonly clientId: string;
  readonly seq: number;
}

interface WriteBase {
  readonly key: string;
  readonly session?: ClientSession;
}

export interface PutCommand extends WriteBase {
  readonly op: "put";
  readonly value: Uint8Array;
}

export interface DeleteCommand extends WriteBase {
  readonly op: "delete";
}

/** Compare-and-swap: `expected` null means the key must be absent; `value` null deletes on match. */
export interface CasCommand extends WriteBase {
  readonly op: "cas";
  readonly expected: Uint8Array | null;
  readonly value: Uint8Array | null;
}

export type KvCommand = PutCommand | DeleteCommand | CasCommand;

export const COMMAND_FORMAT_VERSION = 1;

const OP_PUT = 1;
const OP_DELETE = 2;
const OP_CAS = 3;
/** An MVCC command (etcd's data model, issue 18): the rest is mvcc-codec.ts's, after this op byte. */
export const OP_MVCC = 16;
const FLAG_SESSION = 1;
const FLAG_EXPECTED = 2;
const FLAG_VALUE = 4;

/** Validates `cmd` against `limits` and encodes it; throws INVALID_ARGUMENT or TOO_LARGE. */
export function encodeCommand(cmd: KvCommand, limits: KvLimits = DEFAULT_KV_LIMITS): Uint8Array {
  throwIfError(validateKey(cmd.key, limits));
  for (const v of payloads(cmd)) if (v !== null) throwIfError(validateValue(v, limits));
  if (cmd.session !== undefined) {
    throwIfError(validateClientId(cmd.session.clientId));
    throwIfError(validateSeq(cmd.session.seq));
  }
  const keyBytes = utf8ByteLength(cmd.key);
  const idBytes = cmd.session === undefined ? 0 : utf8ByteLength(cmd.session.clientId);
  let size = 3 + (cmd.session === undefined ? 0 : 1 + idBytes + 8) + 4 + keyBytes;
  for (const v of payloads(cmd)) size += v === null ? 0 : 4 + v.length;

  const w = new ByteWriter(size);
  w.u8(COMMAND_FORMAT_VERSION);
  w.u8(opCode(cmd));
  w.u8(flags(cmd));
  if (cmd.session !== undefined) {
    w.u8(idBytes);
    w.utf8(cmd.session.clientId, idBytes);
    w.u64(cmd.session.seq);
  }
  w.u32(keyBytes);
  w.utf8(cmd.key, keyBytes);
  for (const v of payloads(cmd)) {
    if (v === null) continue;
    w.u32(v.length);
    w.raw(v);
  }
  return w.finish();
}

/** Decodes and validates untrusted bytes; throws a CORRUPT RaftKvError on anything malformed.
 *  Byte arrays in the result are private copies. */
export function decodeCommand(bytes: Uint8Array): KvCommand {
  const r = new ByteReader(bytes, "kv command");
  const version = r.u8("version");
  if (version !== COMMAND_FORMAT_VERSION) throw r.corrupt(`unsupported format version ${version}`);
  const op = r.u8("op");
  const flagBits = r.u8("flags");
  const allowed = op === OP_CAS ? FLAG_SESSION | FLAG_EXPECTED | FLAG_VALUE : FLAG_SESSION;
  if (flagBits & ~allowed) throw r.corrupt(`flags 0x${flagBits.toString(16)} not valid for op ${op}`);
  const session = flagBits & FLAG_SESSION ? readSession(r) : undefined;
  const keyLength = r.u32("key length");
  if (keyLength === 0) throw r.corrupt("key is empty");
  const key = r.utf8(keyLength, "key");
  const withSession = session === undefined ? {} : { session };
  let cmd: KvCommand;
  switch (op) {
    case OP_PUT:
      cmd = { op: "put", key, value: readBlob(r, "value"), ...withSession };
      break;
    case OP_DELETE:
      cmd = { op: "delete", key, ...withSession };
      break;
    case OP_CAS: {
      const expected = flagBits & FLAG_EXPECTED ? readBlob(r, "expected") : null;
      const value = flagBits & FLAG_VALUE ? readBlob(r, "value") : null;
      cmd = { op: "cas", key, expected, value, ...withSession };
      break;
    }
    default:
      throw r.corrupt(`unknown op ${op}`);
  }
  r.end();
  return cmd;
}

function readSession(r: ByteReader): ClientSession {
  const idLength = r.u8("client id length");
  if (idLength === 0 || idLength > MAX_CLIENT_ID_BYTES) {
    throw r.corrupt(`client id length ${idLength} not in 1..${MAX_CLIENT_ID_BYTES}`);
  }
  const clientId = r.utf8(idLength, "client id");
  const seq = r.u64("seq");
  if (seq < 1) throw r.corrupt("seq is 0");
  return { clientId, seq };
}

function readBlob(r: ByteReader, field: string): Uint8Array {
  return r.copy(r.u32(`${field} length`), field);
}

/** The byte payloads a command carries, in wire order (null: absent). */
function payloads(cmd: KvCommand): readonly (Uint8Array | null)[] {
  switch (cmd.op) {
    case "put":
      return [cmd.value];
    case "delete":
      return [];
    case "cas":
      return [cmd.expected, cmd.value];
    default:
      return unreachable(cmd);
  }
}

function opCode(cmd: KvCommand): number {
  switch (cmd.op) {
    case "put":
      return OP_PUT;
    case "delete":
      return OP_DELETE;
    case "cas":
      return OP_CAS;
    default:
      return unreachable(cmd);
  }
}

function flags(cmd: KvCommand): number {
  let f = cmd.session === undefined ? 0 : FLAG_SESSION;
  if (cmd.op === "cas") {
    if (cmd.expected !== null) f |= FLAG_EXPECTED;
    if (cmd.value !== null) f |= FLAG_VALUE;
  }
  return f;
}

function throwIfError(err: RaftKvError | null): void {
  if (err !== null) throw err;
}
