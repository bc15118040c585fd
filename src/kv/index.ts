// The public face of the KV state machine for the replica, server, client and simulator.

export type { CasCommand, ClientSession, DeleteCommand, KvCommand, PutCommand } from "./command.ts";
export { COMMAND_FORMAT_VERSION, decodeCommand, encodeCommand } from "./command.ts";
export type { KvLimits } from "./limits.ts";
export {
  DEFAULT_KV_LIMITS,
  DEFAULT_MAX_KEY_BYTES,
  DEFAULT_MAX_VALUE_BYTES,
  MAX_CLIENT_ID_BYTES,
  validateClientId,
  validateKey,
  validateSeq,
  validateValue,
} from "./limits.ts";
export type { CasResult, DeleteResult, ErrorResult, KvResult, PutResult } from "./result.ts";
export { DEFAULT_MAX_SESSIONS, STALE_SEQUENCE } from "./session-table.ts";
export { SNAPSHOT_FORMAT_VERSION } from "./snapshot.ts";
export type { KvEntry, KvRange, KvStateMachineOptions } from "./state-machine.ts";
export { KvStateMachine } from "./state-machine.ts";
