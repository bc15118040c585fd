// The public face of the raftkv client library.

export type {
  CasResult,
  ClientPath,
  Consistency,
  DeleteResult,
  KeyValue,
  LeaseName,
  NodeStatus,
  NodeStatusRow,
  RaftKvClientOptions,
  RangeResult,
  ReadOptions,
  RequestOptions,
  RoleName,
  WriteResult,
} from "./client.ts";
export { CONSISTENCIES, RaftKvClient } from "./client.ts";
export { isRetryable, RaftKvClientError } from "./errors.ts";
export type { ClientTlsOptions } from "./tls.ts";
export { type Bytes, toBytes, utf8OrNull } from "./values.ts";
