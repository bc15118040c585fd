/**
 * raftkv/client: the typed client of a raftkv cluster. Any node is an entry point: the client finds
 * the leader, follows redirects, retries within the request's deadline, and tags writes with a client
 * id and sequence number so that a retried write applies once.
 *
 * @packageDocumentation
 * @module raftkv/client
 */

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
  RangeAllOptions,
  RangeOptions,
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
