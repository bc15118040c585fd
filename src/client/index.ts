/**
 * raftkv/client: the typed client of a raftkv cluster. Any node is an entry point: the client finds
 * the leader, follows redirects, retries within the request's deadline, and tags writes with a client
 * id and sequence number so that a retried write applies once. Beside put/get/delete/cas/range:
 * revisions in every answer, `txn()`, `watch()` (an async iterator that resumes across failures),
 * `lease()` (kept alive until closed), and the Mutex and Election recipes (concurrency.ts).
 *
 * @packageDocumentation
 * @module raftkv/client
 */

export type {
  CasResult,
  ClientPath,
  Consistency,
  DeleteResult,
  GetKvResult,
  KeyValue,
  LeaseName,
  NodeStatus,
  NodeStatusRow,
  PutOptions,
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
export { Election, type Leader, Mutex } from "./concurrency.ts";
export { isRetryable, RaftKvClientError } from "./errors.ts";
export {
  hex as leaseIdHex,
  Lease,
  type LeaseEvents,
  type LeaseOptions,
  type LeaseTimeToLive,
} from "./lease.ts";
export type { ClientTlsOptions } from "./tls.ts";
export {
  Compare,
  type CompareOp,
  type CompareOptions,
  type KeyValueRecord,
  Op,
  TxnBuilder,
  type TxnCompare,
  type TxnOperation,
  type TxnOpResult,
  type TxnResult,
} from "./txn.ts";
export { type Bytes, toBytes, utf8OrNull } from "./values.ts";
export { type WatchEvent, Watcher, type WatchOptions } from "./watch.ts";
