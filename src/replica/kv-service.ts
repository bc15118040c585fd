// The KV operations on one node, over its Replica: what the client gRPC service and the simulator call.

import type { NodeId } from "../core/types.ts";
import { type ClientSession, encodeCommand, type KvCommand } from "../kv/command.ts";
import { DEFAULT_KV_LIMITS, type KvLimits, validateKey } from "../kv/limits.ts";
import type { KvResult } from "../kv/result.ts";
import type { KvRange } from "../kv/state-machine.ts";
import { RaftKvError } from "../lib/errors.ts";
import { type Consistency, NotLeaderError, type Replica } from "./replica.ts";

export interface WriteOutcome {
  readonly revision: number;
  readonly result: KvResult;
}

/** The reads of a KV state machine (KvStateMachine and StoreStateMachine both have them). */
export interface KvReads {
  get(key: string): Uint8Array | null;
  range(prefix: string, limit: number, startAfter?: string, maxBytes?: number): KvRange;
}

/** Told how each read was actually served (the simulator's lease checker listens). */
export type ReadObserver = (servedAs: Consistency, term: number) => void;

/** Where time can pass inside a request: after the lease check (before the read it guards), after the
 *  read is evaluated (before its reply leaves), after a write is applied (before its answer). */
export type RequestPoint = "afterLeaseCheck" | "afterRead" | "afterApply";

/** The simulator's seam for a loop that stalls inside a request: a promise to wait for, or undefined
 *  (no pause). Never set in production. */
export type RequestPause = (point: RequestPoint) => Promise<void> | undefined;

export class KvService {
  private readonly replica: Replica<KvResult>;
  private readonly limits: KvLimits;
  private readonly onRead: ReadObserver | undefined;
  private readonly pauseAt: RequestPause | undefined;

  constructor(
    replica: Replica<KvResult>,
    limits: KvLimits = DEFAULT_KV_LIMITS,
    onRead?: ReadObserver,
    pauseAt?: RequestPause,
  ) {
    this.replica = replica;
    this.limits = limits;
    this.onRead = onRead;
    this.pauseAt = pauseAt;
  }

  /** Waits where the simulator stalls this request (nothing in production). */
  private async pause(point: RequestPoint): Promise<void> {
    const p = this.pauseAt?.(point);
    if (p !== undefined) await p;
  }

  get nodeId(): NodeId {
    return this.replica.id;
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

  async get(key: string, consistency: Consistency): Promise<Uint8Array | null> {
    this.checkKey(key);
    const ticket = await this.barrier(consistency);
    if (this.pauseAt !== undefined) await this.pause("afterLeaseCheck");
    const value = this.kv().get(key);
    if (this.pauseAt !== undefined) await this.pause("afterRead");
    if (!this.replica.stillValid(ticket)) return this.get(key, "readIndex"); // lease ran out meanwhile
    this.onRead?.(ticket.consistency, this.replica.core.softState().term);
    return value;
  }

  /** Keys with the prefix in order, after `startAfter` when given (paging), up to `limit` entries and
   *  `maxBytes` of keys and values (the state machine stops reading there). */
  async range(
    prefix: string,
    limit: number,
    consistency: Consistency,
    startAfter?: string,
    maxBytes?: number,
  ): Promise<KvRange> {
    const ticket = await this.barrier(consistency);
    const r = this.kv().range(prefix, limit, startAfter, maxBytes);
    if (!this.replica.stillValid(ticket)) return this.range(prefix, limit, "readIndex", startAfter, maxBytes);
    return r;
  }

  private async barrier(consistency: Consistency) {
    return this.replica.readBarrier(consistency);
  }

  private kv(): KvReads {
    return this.replica.stateMachine as unknown as KvReads;
  }

  private checkKey(key: string): void {
    const err = validateKey(key, this.limits);
    if (err !== null) throw err;
  }

  private async write(cmd: KvCommand): Promise<WriteOutcome> {
    const data = encodeCommand(cmd, this.limits);
    const { index, result } = await this.replica.propose(data);
    if (this.pauseAt !== undefined) await this.pause("afterApply");
    if (result.type === "error") {
      throw new RaftKvError({
        code: "INVALID_ARGUMENT",
        message: `write at index ${index} was refused by the state machine: ${result.message}`,
        nodeId: this.replica.id,
      });
    }
    // A retried write that was not applied again reports the index of its first application.
    return { revision: result.revision, result };
  }
}

export { NotLeaderError };
