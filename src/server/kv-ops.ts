// The KV operations on one node, over the embedding API (a RaftNode replicating KvState): what the client
// gRPC service calls. (src/replica/kv-service.ts is the same over a bare Replica, for the simulator.)

import type { NodeId } from "../core/types.ts";
import { type ClientSession, encodeCommand, type KvCommand } from "../kv/command.ts";
import { type KvLimits, validateKey } from "../kv/limits.ts";
import type { KvResult } from "../kv/result.ts";
import type { KvRange } from "../kv/state-machine.ts";
import type { KeyRecord, StoreResult } from "../kv/store-state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { Consistency, RaftNode } from "./embed.ts";
import { type KvState, storeRevisionOf } from "./kv-state.ts";

export interface WriteOutcome {
  /** The log index that applied the write (for a deduplicated retry: the first application's). */
  readonly revision: number;
  /** The store revision after the entry (for a deduplicated retry: at the retry). */
  readonly storeRevision: number;
  readonly result: KvResult;
}

/** A key's record with the store revision the read was served at. */
export interface RecordRead {
  readonly record: KeyRecord | null;
  readonly revision: number;
}

/** A range with each entry's record and the store revision it was served at. */
export interface RecordRange {
  readonly entries: readonly { readonly key: string; readonly record: KeyRecord }[];
  readonly more: boolean;
  readonly revision: number;
}

export class KvOps {
  constructor(
    private readonly node: RaftNode<KvState, StoreResult>,
    private readonly limits: KvLimits,
  ) {}

  get nodeId(): NodeId {
    return this.node.id;
  }

  put(key: string, value: Uint8Array, session?: ClientSession): Promise<WriteOutcome> {
    return this.write(session === undefined ? { op: "put", key, value } : { op: "put", key, value, session });
  }

  delete(key: string, session?: ClientSession): Promise<WriteOutcome> {
    return this.write(session === undefined ? { op: "delete", key } : { op: "delete", key, session });
  }

  cas(
    key: string,
    expected: Uint8Array | null,
    value: Uint8Array | null,
    session?: ClientSession,
  ): Promise<WriteOutcome> {
    const cmd: KvCommand =
      session === undefined
        ? { op: "cas", key, expected, value }
        : { op: "cas", key, expected, value, session };
    return this.write(cmd);
  }

  get(key: string, consistency: Consistency): Promise<Uint8Array | null> {
    const err = validateKey(key, this.limits);
    if (err !== null) return Promise.reject(err);
    return this.node.read((kv) => kv.current.get(key), { consistency });
  }

  /** The key's record (revisions, lease, value) and the store revision, read together. */
  getRecord(key: string, consistency: Consistency): Promise<RecordRead> {
    const err = validateKey(key, this.limits);
    if (err !== null) return Promise.reject(err);
    return this.node.read((kv) => ({ record: kv.current.getRecord(key), revision: kv.current.revision }), {
      consistency,
    });
  }

  /** As range(), with each key's record and the store revision, read together. */
  rangeRecords(
    prefix: string,
    limit: number,
    consistency: Consistency,
    startAfter?: string,
    maxBytes?: number,
  ): Promise<RecordRange> {
    return this.node.read(
      (kv) => {
        const sm = kv.current;
        const r = sm.range(prefix, limit, startAfter, maxBytes);
        const entries = r.entries.flatMap((e) => {
          const record = sm.getRecord(e.key);
          return record === null ? [] : [{ key: e.key, record }];
        });
        return { entries, more: r.more, revision: sm.revision };
      },
      { consistency },
    );
  }

  /** Keys with the prefix in order, after `startAfter` when given (paging), up to `limit` entries and
   *  `maxBytes` of keys and values (the state machine stops reading there). */
  range(
    prefix: string,
    limit: number,
    consistency: Consistency,
    startAfter?: string,
    maxBytes?: number,
  ): Promise<KvRange> {
    return this.node.read((kv) => kv.current.range(prefix, limit, startAfter, maxBytes), { consistency });
  }

  private async write(cmd: KvCommand): Promise<WriteOutcome> {
    const data = encodeCommand(cmd, this.limits);
    const { index, result: answer } = await this.node.propose(data);
    if (!("type" in answer))
      throw new RaftKvError({
        code: "INTERNAL",
        message: `a raftkv.v1 write at index ${index} got an MVCC result (${answer.op})`,
        nodeId: this.node.id,
      });
    const result: KvResult = answer;
    if (result.type === "error") {
      throw new RaftKvError({
        code: "INVALID_ARGUMENT",
        message: `write at index ${index} was refused by the state machine: ${result.message}`,
        nodeId: this.node.id,
      });
    }
    return { revision: result.revision, storeRevision: storeRevisionOf(answer), result };
  }
}
