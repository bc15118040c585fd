// The benchmark's workloads and targets: what one operation of each workload is, for raftkv (through
// RaftKvClient, stream or unary path) and for etcd (through EtcdKvClient); and how rows of the two map.

import { type ClientPath, RaftKvClient } from "../client/index.ts";
import { Prng } from "../lib/prng.ts";
import { EtcdKvClient } from "./etcd-client.ts";

export type Target =
  | { readonly system: "raftkv"; readonly endpoints: readonly string[]; readonly path: ClientPath }
  | { readonly system: "etcd"; readonly endpoints: readonly string[]; readonly leader: string };

export const RAFTKV_WORKLOADS = ["put", "get-lease", "get-readIndex", "get-stale", "mix"] as const;
export const ETCD_WORKLOADS = ["put", "get-linearizable", "get-serializable", "mix"] as const;
export type RaftkvWorkload = (typeof RAFTKV_WORKLOADS)[number];
export type EtcdWorkload = (typeof ETCD_WORKLOADS)[number];
/** "fill" writes each key of a range once (before reads, so they find values). */
export type Workload = RaftkvWorkload | EtcdWorkload | "fill";

/** The etcd workload each raftkv workload is compared with (issue 6: lease and readIndex reads against
 *  linearizable reads, stale against serializable; mix is 90% such reads, 10% puts on both). */
export const ETCD_COUNTERPART: Record<RaftkvWorkload, EtcdWorkload> = {
  put: "put",
  "get-lease": "get-linearizable",
  "get-readIndex": "get-linearizable",
  "get-stale": "get-serializable",
  mix: "mix",
};

/** Share of puts in "mix". */
const MIX_PUT_SHARE = 0.1;

/** One system's client, able to run any of its workloads' operations on key number `k`. */
export interface Driver {
  op(workload: Workload, k: number): Promise<unknown>;
  close(): void;
}

export interface DriverOptions {
  readonly keySpace: number;
  readonly valueBytes: number;
  readonly seed: number;
  /** Requests this driver may have in flight (raftkv: one write session each). */
  readonly concurrency: number;
}

export function keyName(k: number): string {
  return `key-${k.toString().padStart(6, "0")}`;
}

export function makeDriver(t: Target, o: DriverOptions): Driver {
  const prng = new Prng(o.seed);
  const value = new Uint8Array(o.valueBytes);
  for (let i = 0; i < value.length; i++) value[i] = prng.nextU32() & 0xff;
  return t.system === "raftkv" ? raftkvDriver(t, o, prng, value) : etcdDriver(t, o, prng, value);
}

function raftkvDriver(
  t: Target & { system: "raftkv" },
  o: DriverOptions,
  prng: Prng,
  value: Uint8Array,
): Driver {
  const kv = new RaftKvClient({
    endpoints: t.endpoints,
    path: t.path,
    timeoutMs: 5000,
    maxConcurrentWrites: Math.max(1, o.concurrency),
    seed: o.seed,
  });
  const keys = Array.from({ length: o.keySpace }, (_, k) => keyName(k));
  const key = (k: number): string => keys[k % keys.length]!;
  const op = (w: Workload, k: number): Promise<unknown> => {
    switch (w) {
      case "put":
      case "fill":
        return kv.put(key(k), value);
      case "get-lease":
        return kv.get(key(k), { consistency: "lease" });
      case "get-readIndex":
        return kv.get(key(k), { consistency: "readIndex" });
      case "get-stale":
        return kv.get(key(k), { consistency: "stale" });
      case "mix":
        return prng.next() < MIX_PUT_SHARE ? kv.put(key(k), value) : kv.get(key(k), { consistency: "lease" });
      case "get-linearizable":
      case "get-serializable":
        return Promise.reject(new Error(`${w} is an etcd workload`));
      default: {
        const never: never = w;
        return never;
      }
    }
  };
  return { op, close: () => kv.close() };
}

function etcdDriver(t: Target & { system: "etcd" }, o: DriverOptions, prng: Prng, value: Uint8Array): Driver {
  const etcd = new EtcdKvClient({ endpoints: t.endpoints, leader: t.leader, timeoutMs: 5000 });
  const encoder = new TextEncoder();
  const keys = Array.from({ length: o.keySpace }, (_, k) => encoder.encode(keyName(k)));
  const key = (k: number): Uint8Array => keys[k % keys.length]!;
  const op = (w: Workload, k: number): Promise<unknown> => {
    switch (w) {
      case "put":
      case "fill":
        return etcd.put(key(k), value);
      case "get-linearizable":
        return etcd.get(key(k), false);
      case "get-serializable":
        return etcd.get(key(k), true);
      case "mix":
        return prng.next() < MIX_PUT_SHARE ? etcd.put(key(k), value) : etcd.get(key(k), false);
      case "get-lease":
      case "get-readIndex":
      case "get-stale":
        return Promise.reject(new Error(`${w} is a raftkv workload`));
      default: {
        const never: never = w;
        return never;
      }
    }
  };
  return { op, close: () => etcd.close() };
}
