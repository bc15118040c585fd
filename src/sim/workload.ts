// Simulated clients: put/get/delete/cas on a small key space through the real KvService, with leader
// discovery, redirects, per-attempt timeouts, bounded retries and exactly-once sessions; every
// operation is recorded with its call and return times for the linearizability checker.

import type { NodeId } from "../core/types.ts";
import type { ClientSession } from "../kv/command.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { Prng } from "../lib/prng.ts";
import type { Consistency } from "../replica/replica.ts";
import type { EventQueue } from "./event-queue.ts";
import type { HistoryOp, OpKind } from "./history.ts";
import type { SimNode } from "./sim-node.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

export interface WorkloadOptions {
  keys: number;
  /** Pause between one client's operations, µs range. */
  thinkUs: [number, number];
  attemptTimeoutUs: number;
  opDeadlineUs: number;
  maxAttempts: number;
  /** Client-to-node one-way latency range, µs. */
  rpcDelayUs: [number, number];
}

type Reply =
  | { kind: "ok"; result: string | boolean | null }
  | { kind: "redirect"; leaderId: NodeId | null }
  | { kind: "refused" }
  | { kind: "unknown" };

interface Request {
  op: OpKind;
  key: string;
  value: string | null;
  expected: string | null;
  session: ClientSession;
  consistency: Consistency;
}

export class SimClient {
  readonly id: number;
  private readonly q: EventQueue;
  private readonly nodes: readonly SimNode[];
  private readonly prng: Prng;
  private readonly o: WorkloadOptions;
  private readonly history: HistoryOp[];
  private seq = 0;
  private written = 0;
  private leaderGuess: NodeId;
  private lastSeen = new Map<string, string | null>();
  busy = false;

  constructor(
    id: number,
    q: EventQueue,
    nodes: readonly SimNode[],
    prng: Prng,
    o: WorkloadOptions,
    history: HistoryOp[],
  ) {
    this.id = id;
    this.q = q;
    this.nodes = nodes;
    this.prng = prng;
    this.o = o;
    this.history = history;
    this.leaderGuess = nodes[prng.int(0, nodes.length - 1)]!.id;
  }

  /** Issue random operations until stopAtUs. */
  async run(stopAtUs: number): Promise<void> {
    while (this.q.nowUs < stopAtUs) {
      await this.sleep(this.prng.int(this.o.thinkUs[0], this.o.thinkUs[1]));
      if (this.q.nowUs >= stopAtUs) break;
      await this.randomOp();
    }
  }

  private randomOp(): Promise<unknown> {
    const key = `k${this.prng.int(0, this.o.keys - 1)}`;
    const r = this.prng.next();
    if (r < 0.4) return this.op("get", key, null, null, this.prng.chance(0.7) ? "lease" : "readIndex");
    if (r < 0.75) return this.op("put", key, this.newValue(), null, "lease");
    if (r < 0.85) return this.op("delete", key, null, null, "lease");
    const expected = this.lastSeen.get(key) ?? null;
    return this.op("cas", key, this.newValue(), expected, "lease");
  }

  private newValue(): string {
    return `c${this.id}v${++this.written}`;
  }

  /** One operation with retries; records it in the history. Returns the result for callers. */
  async op(
    op: OpKind,
    key: string,
    value: string | null,
    expected: string | null,
    consistency: Consistency,
  ): Promise<HistoryOp> {
    this.busy = true;
    const session = { clientId: `client-${this.id}`, seq: ++this.seq };
    const req: Request = { op, key, value, expected, session, consistency };
    const call = this.q.nowUs / 1000;
    const deadline = this.q.nowUs + this.o.opDeadlineUs;
    const isWrite = op !== "get";
    let maybeApplied = false;
    let target = this.leaderGuess;
    let done: HistoryOp | null = null;
    for (
      let attempt = 0;
      attempt < this.o.maxAttempts && this.q.nowUs < deadline && done === null;
      attempt++
    ) {
      const reply = await this.attempt(
        target,
        req,
        Math.min(this.o.attemptTimeoutUs, deadline - this.q.nowUs),
      );
      switch (reply.kind) {
        case "ok":
          this.leaderGuess = target;
          done = {
            client: this.id,
            op,
            key,
            value,
            expected,
            call,
            return: this.q.nowUs / 1000,
            ok: true,
            result: reply.result,
          };
          break;
        case "redirect":
          if (reply.leaderId !== null && reply.leaderId !== target) {
            target = reply.leaderId;
            // Hints can chase each other around during an election: back off after the first.
            if (attempt > 0) await this.sleep(this.prng.int(2_000, 10_000));
          } else {
            target = this.otherNode(target);
            await this.sleep(this.prng.int(10_000, 40_000));
          }
          break;
        case "refused":
          await this.sleep(this.prng.int(10_000, 40_000));
          break;
        case "unknown":
          maybeApplied ||= isWrite;
          target = this.otherNode(target);
          await this.sleep(this.prng.int(5_000, 20_000));
          break;
      }
    }
    if (done === null) {
      const unknown = isWrite && maybeApplied;
      done = {
        client: this.id,
        op,
        key,
        value,
        expected,
        call,
        return: unknown ? null : this.q.nowUs / 1000,
        ok: unknown ? null : false,
        result: null,
      };
    }
    if (done.ok === true) {
      if (op === "get") this.lastSeen.set(key, done.result as string | null);
      else if (op === "put") this.lastSeen.set(key, value);
      else if (op === "delete") this.lastSeen.set(key, null);
      else if (done.result === true) this.lastSeen.set(key, value);
    }
    this.history.push(done);
    this.busy = false;
    return done;
  }

  private otherNode(current: NodeId): NodeId {
    const others = this.nodes.filter((n) => n.id !== current && !n.retired);
    return others.length === 0 ? current : this.prng.pick(others).id;
  }

  private sleep(us: number): Promise<void> {
    return new Promise((r) => this.q.after(us, r));
  }

  /** One RPC to one node: the request and the reply each cross the client network. */
  private attempt(target: NodeId, req: Request, timeoutUs: number): Promise<Reply> {
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: Reply): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      this.q.after(timeoutUs, () => settle({ kind: "unknown" }));
      const node = this.nodes.find((n) => n.id === target)!;
      this.q.after(this.delay(), () => {
        node.run(() => {
          const svc = node.service;
          if (svc === null) return;
          // A reply leaves only from the incarnation that took the request (not after a crash).
          const inc = node.incarnation;
          const replyAt = (r: Reply): void =>
            node.run(() => {
              if (node.incarnation === inc) this.q.after(this.delay(), () => settle(r));
            });
          serve(svc, req).then(replyAt, (err: unknown) => replyAt(classify(err)));
        });
      });
    });
  }

  private delay(): number {
    return this.prng.int(this.o.rpcDelayUs[0], this.o.rpcDelayUs[1]);
  }
}

async function serve(svc: NonNullable<SimNode["service"]>, req: Request): Promise<Reply> {
  const v = (s: string | null): Uint8Array | null => (s === null ? null : enc.encode(s));
  switch (req.op) {
    case "get": {
      const got = await svc.get(req.key, req.consistency);
      return { kind: "ok", result: got === null ? null : dec.decode(got) };
    }
    case "put":
      await svc.put(req.key, v(req.value)!, req.session);
      return { kind: "ok", result: null };
    case "delete":
      await svc.delete(req.key, req.session);
      return { kind: "ok", result: null };
    case "cas": {
      const out = await svc.cas(req.key, v(req.expected), v(req.value), req.session);
      return { kind: "ok", result: out.result.type === "cas" ? out.result.succeeded : false };
    }
  }
}

/** Which refusals certainly mean "not applied" and which leave the outcome unknown. */
function classify(err: unknown): Reply {
  if (err instanceof RaftKvError) {
    switch (err.code) {
      case "NOT_LEADER":
      case "NO_LEADER":
        return { kind: "redirect", leaderId: (err as { leaderId?: NodeId | null }).leaderId ?? null };
      case "OVERLOADED":
      case "TOO_LARGE":
      case "INVALID_ARGUMENT":
        return { kind: "refused" };
      default:
        return { kind: "unknown" };
    }
  }
  return { kind: "unknown" };
}
