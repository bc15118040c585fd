// A minimal etcd v3 KV client on @grpc/grpc-js (the library raftkv's client uses): Put, and Range of one
// key, linearizable or serializable. Writes and linearizable reads go to the leader (etcd's best case:
// no forwarding), serializable reads round-robin over every member, as raftkv's stale reads do.

import * as grpc from "@grpc/grpc-js";
import { deadlineIn } from "../clock/deadline.ts";
import {
  decodePut,
  decodeRange,
  ETCD_PUT_PATH,
  ETCD_RANGE_PATH,
  type EtcdHeader,
  type EtcdRange,
  encodePut,
  encodeRange,
} from "./etcd-codec.ts";

const identity = (b: Buffer): Buffer => b;

export interface EtcdClientOptions {
  /** Client URLs' host:port of every member. */
  readonly endpoints: readonly string[];
  /** host:port of the leader (writes and linearizable reads); default the first endpoint. */
  readonly leader?: string;
  readonly timeoutMs?: number;
}

export class EtcdKvClient {
  private readonly clients: grpc.Client[];
  private readonly leader: grpc.Client;
  private readonly timeoutMs: number;
  private rotation = 0;

  constructor(o: EtcdClientOptions) {
    const options: grpc.ChannelOptions = {
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.enable_retries": 0,
      "grpc.keepalive_time_ms": 30_000,
    };
    const creds = grpc.credentials.createInsecure();
    this.clients = o.endpoints.map((e) => new grpc.Client(e, creds, options));
    const i = o.leader === undefined ? 0 : o.endpoints.indexOf(o.leader);
    if (i < 0) throw new Error(`etcd leader ${o.leader} is not among the endpoints`);
    this.leader = this.clients[i]!;
    this.timeoutMs = o.timeoutMs ?? 5000;
  }

  put(key: Uint8Array, value: Uint8Array): Promise<EtcdHeader | null> {
    return this.call(this.leader, ETCD_PUT_PATH, encodePut(key, value), decodePut);
  }

  /** Linearizable (leader, ReadIndex inside etcd) or serializable (any member, its local state). */
  get(key: Uint8Array, serializable: boolean): Promise<EtcdRange> {
    const c = serializable ? this.clients[this.rotation++ % this.clients.length]! : this.leader;
    return this.call(c, ETCD_RANGE_PATH, encodeRange(key, serializable), decodeRange);
  }

  close(): void {
    for (const c of this.clients) c.close();
  }

  private call<T>(c: grpc.Client, path: string, req: Buffer, decode: (b: Buffer) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      c.makeUnaryRequest(
        path,
        identity,
        decode,
        req,
        new grpc.Metadata(),
        { deadline: deadlineIn(this.timeoutMs) },
        (err, res) => {
          if (err !== null) reject(err);
          else if (res === undefined) reject(new Error(`${path}: no response`));
          else resolve(res);
        },
      );
    });
  }
}
