// Faults aimed at I/O points and at time inside a node, drawn per seed beside the random nemesis:
// crashes right after a chosen message leaves or between a write's submission and its completion (with
// the nodes it talks to crashing soon after, as in a rack's power loss), pauses inside a request
// (leader-biased), leadership transfers whose target stalls right after TimeoutNow, one-directional
// slow links, disk stalls, and disk faults (fsync failure, a full disk, corrupted reads).

import type { Message, NodeId } from "../core/types.ts";
import type { Prng } from "../lib/prng.ts";
import type { RequestPoint } from "../replica/kv-service.ts";
import type { EventQueue } from "./event-queue.ts";
import type { SimNetwork } from "./network.ts";
import type { SimDisk, SimNode } from "./sim-node.ts";
import type { IoKind } from "./timed-file-system.ts";

export interface IoFaultStats {
  /** Crashes right after a chosen message was sent. */
  aimedAfterSend: number;
  /** Crashes between a durability I/O's submission and its completion. */
  aimedInIo: number;
  /** Nodes crashed soon after an aimed crash (the peer it talked to, or the rest of the cluster). */
  correlated: number;
  requestPauses: number;
  transferStalls: number;
  slowLinks: number;
  diskStalls: number;
  fsyncFailures: number;
  diskFullEpisodes: number;
  corruptReads: number;
  /** Nodes that stopped on an injected disk fault (expected: they must stop acknowledging). */
  storageStops: number;
}

export function emptyIoFaultStats(): IoFaultStats {
  return {
    aimedAfterSend: 0,
    aimedInIo: 0,
    correlated: 0,
    requestPauses: 0,
    transferStalls: 0,
    slowLinks: 0,
    diskStalls: 0,
    fsyncFailures: 0,
    diskFullEpisodes: 0,
    corruptReads: 0,
    storageStops: 0,
  };
}

export interface IoFaultScene {
  readonly q: EventQueue;
  readonly nodes: readonly SimNode[];
  readonly disks: readonly SimDisk[];
  readonly net: SimNetwork;
  readonly ids: readonly NodeId[];
  readonly endUs: number;
  readonly electionUs: number;
  readonly heartbeatUs: number;
  readonly stats: IoFaultStats;
  /** Counts a crash in the run's figures. */
  readonly countCrash: () => void;
  readonly trace: (m: string) => void;
}

/** Per node: a trigger on the messages it sends (returns true when it fired and is used up). */
export type SendTrigger = (m: Message) => boolean;

/** I/O kinds after whose submission a crash loses a promise of durability. */
const DURABILITY_IO: readonly IoKind[] = ["sync", "writeDurable", "dirSync", "rename"];

export class IoFaults {
  /** Per node: a trigger on what it sends (a transfer's TimeoutNow). */
  private readonly triggers = new Map<NodeId, SendTrigger>();
  /** Cluster-wide: crash whichever node next sends a message of this kind (armed until it fires). */
  private readonly aimed = new Map<string, (from: NodeId, m: Message) => boolean>();
  /** Request pauses per request point on a leader (a follower's are 4 times rarer); 0 in half the seeds. */
  private readonly pauseRate: number;
  private readonly s: IoFaultScene;
  private readonly prng: Prng;

  constructor(scene: IoFaultScene, prng: Prng) {
    this.s = scene;
    this.prng = prng;
    this.pauseRate = prng.chance(0.5) ? 0 : 0.002 + prng.next() * 0.03;
  }

  /** Called for every message a node sends (after it is on the network). */
  onSent(from: NodeId, m: Message): void {
    const t = this.triggers.get(from);
    if (t?.(m) === true) this.triggers.delete(from);
    for (const [what, fire] of this.aimed) if (fire(from, m)) this.aimed.delete(what);
  }

  /** The KvService seam: maybe stall this node inside the request, up to 3 election timeouts. */
  requestPause(node: NodeId, point: RequestPoint): Promise<void> | undefined {
    const { q, nodes, endUs, electionUs } = this.s;
    if (this.pauseRate === 0 || q.nowUs >= endUs) return undefined;
    const n = nodes[node];
    const leader = n?.replica?.core.softState().role === "leader";
    if (n === undefined || !this.prng.chance(leader ? this.pauseRate : this.pauseRate / 4)) return undefined;
    const us = this.prng.int(0, 3 * electionUs);
    this.s.stats.requestPauses++;
    this.s.trace(`io-faults: node ${node} stalls ${(us / 1000).toFixed(1)} ms ${point}`);
    n.pause(us);
    return new Promise((r) => q.after(us, r));
  }

  /** Draws and injects until the faults stop. */
  async run(level: "normal" | "heavy"): Promise<void> {
    const { q, endUs } = this.s;
    const gap: [number, number] = level === "heavy" ? [600_000, 3_500_000] : [2_000_000, 10_000_000];
    while (q.nowUs < endUs) {
      await this.sleep(this.prng.int(gap[0], gap[1]));
      if (q.nowUs >= endUs) break;
      const r = this.prng.next();
      if (r < 0.35) this.aimAfterSend();
      else if (r < 0.6) this.aimInIo();
      else if (r < 0.68) this.transferStall();
      else if (r < 0.78) this.slowLink();
      else if (r < 0.84) this.diskStall();
      else this.diskFault();
    }
    this.triggers.clear();
    this.aimed.clear();
    for (const d of this.s.disks) if (d.timed !== undefined) d.timed.onSubmit = null;
  }

  /** Was this storage failure (or refusal to boot) caused by a fault we injected on this node's disk:
   *  an injected EIO, a full disk, or a checksum catching a corrupted read we delivered? Then the node
   *  must stop acknowledging (or refuse to start), and may. Anything else is a bug. */
  isInjected(node: NodeId, err: unknown): boolean {
    const text = describeError(err);
    if (/injected|ENOSPC|no space left/i.test(text)) return true;
    const corrupted = this.s.disks[node]?.timed?.takeDeliveredCorruption() ?? false;
    return corrupted && /CORRUPT|checksum/i.test(text);
  }

  private sleep(us: number): Promise<void> {
    return new Promise((r) => this.s.q.after(us, r));
  }

  /** Crash a node now and restart it soon; and, often, the peer it was talking to and the rest. */
  private crashAimed(n: SimNode, peer: NodeId | null, why: string): void {
    const { q, nodes, net } = this.s;
    this.crashRestart(n, why);
    const near = 2 * net.faults.maxDelayUs + 2000;
    const r = this.prng.next();
    const others = nodes.filter((o) => o !== n && (r < 0.35 || o.id === peer));
    if (r >= 0.8) return;
    for (const o of others) {
      const d = this.prng.int(0, near);
      q.after(d, () => {
        if (q.nowUs >= this.s.endUs || (!o.up && !o.starting)) return;
        this.s.stats.correlated++;
        this.crashRestart(o, `after node ${n.id}'s aimed crash`);
      });
    }
  }

  private crashRestart(n: SimNode, why: string): void {
    const { q, endUs } = this.s;
    this.s.countCrash();
    this.s.trace(`io-faults: crash node ${n.id} (${why})`);
    n.crash(this.prng);
    q.after(this.prng.int(5_000, 800_000), () => {
      if (!n.up && q.nowUs < endUs) void n.start();
    });
  }

  /** Crash the next node to send a message of a chosen kind (an ack, a granted vote, a snapshot ack,
   *  the leader's entries), right after it is sent; armed until one is sent (rare ones wait long). */
  private aimAfterSend(): void {
    const kinds: readonly [string, (m: Message) => boolean][] = [
      ["append ack", (m) => m.type === "appendResponse" && m.success],
      ["granted vote", (m) => m.type === "voteResponse" && m.granted && !m.preVote],
      ["snapshot ack", (m) => m.type === "snapshotResponse" && m.installed],
      ["append with entries", (m) => m.type === "append" && m.entries.length > 0],
      ["any message", () => true],
    ];
    const [what, match] = this.prng.pick(kinds);
    if (this.aimed.has(what)) return;
    const { q, nodes } = this.s;
    this.s.trace(`io-faults: the next node to send a ${what} crashes right after`);
    this.aimed.set(what, (from, m) => {
      const n = nodes[from];
      if (n === undefined || !match(m)) return false;
      const inc = n.incarnation;
      // After this event (the one sending it), before anything the message promised is done.
      q.after(0, () => {
        if (n.incarnation !== inc || q.nowUs >= this.s.endUs) return;
        this.s.stats.aimedAfterSend++;
        this.crashAimed(n, m.to, `right after its ${what} to ${m.to}`);
      });
      return true;
    });
  }

  /** Crash a node at an instant between a durability I/O's submission and its completion. */
  private aimInIo(): void {
    const withDisk = this.s.nodes.filter((n, i) => n.up && this.s.disks[i]?.timed !== undefined);
    if (withDisk.length === 0) return;
    const n = this.prng.pick(withDisk);
    const timed = this.s.disks[n.id]!.timed!;
    const { q } = this.s;
    const inc = n.incarnation;
    const until = q.nowUs + 4 * this.s.electionUs;
    timed.onSubmit = (io) => {
      if (n.incarnation !== inc || q.nowUs > until) {
        timed.onSubmit = null;
        return;
      }
      if (!DURABILITY_IO.includes(io.kind)) return;
      timed.onSubmit = null;
      const at = this.prng.int(io.submittedUs, Math.max(io.submittedUs, io.completesUs - 1));
      q.at(at, () => {
        if (n.incarnation !== inc || q.nowUs >= this.s.endUs) return;
        this.s.stats.aimedInIo++;
        this.crashAimed(n, null, `inside its ${io.kind} of ${io.path}`);
      });
    };
  }

  /** A leadership transfer whose target stalls right after TimeoutNow (the transfer times out). */
  private transferStall(): void {
    const l = this.s.nodes.find((n) => n.replica?.core.softState().role === "leader");
    if (l === undefined) return;
    const to = this.prng.pick(this.s.ids.filter((i) => i !== l.id));
    if (!l.replica!.transferLeadership(to)) return;
    const { q, electionUs } = this.s;
    const inc = l.incarnation;
    const until = q.nowUs + 4 * electionUs;
    this.triggers.set(l.id, (m) => {
      if (l.incarnation !== inc || q.nowUs > until) return true;
      if (m.type !== "timeoutNow") return false;
      const target = this.s.nodes[m.to];
      const us = this.prng.int(electionUs / 2, 3 * electionUs);
      this.s.stats.transferStalls++;
      this.s.trace(`io-faults: transfer ${l.id} -> ${m.to}, target stalls ${(us / 1000).toFixed(1)} ms`);
      target?.pause(us);
      return true;
    });
  }

  /** One direction of one link slower than heartbeats (acks late, or heartbeats late) for a while. */
  private slowLink(): void {
    const { q, net, ids, heartbeatUs, electionUs } = this.s;
    const [a, b] = this.prng.shuffle(ids);
    if (a === undefined || b === undefined) return;
    const extra = this.prng.int(heartbeatUs, 2 * electionUs);
    this.s.stats.slowLinks++;
    this.s.trace(`io-faults: link ${a}->${b} slow by up to ${(extra / 1000).toFixed(0)} ms`);
    net.slowLink(a, b, extra);
    q.after(this.prng.int(300_000, 4_000_000), () => net.clearSlow(a, b));
  }

  private diskStall(): void {
    const withStalls = this.s.disks.filter((d) => d.timed?.profile.stallUs != null);
    if (withStalls.length === 0) return;
    const d = this.prng.pick(withStalls);
    const us = d.timed!.drawStall(this.prng);
    this.s.stats.diskStalls++;
    this.s.trace(`io-faults: a disk stalls for ${(us / 1000).toFixed(0)} ms`);
  }

  /** fsync failure, a full disk for a while, or corrupted reads of snapshot files. */
  private diskFault(): void {
    const i = this.prng.int(0, this.s.disks.length - 1);
    const timed = this.s.disks[i]?.timed;
    if (timed === undefined) return;
    const r = this.prng.next();
    if (r < 0.4) {
      this.s.stats.fsyncFailures++;
      this.s.trace(`io-faults: node ${i}'s next fsync fails (EIO)`);
      timed.inner.injectFault("sync", "EIO", 1);
    } else if (r < 0.7) {
      this.s.stats.diskFullEpisodes++;
      this.s.trace(`io-faults: node ${i}'s disk is full`);
      timed.inner.setDiskFull(true);
      this.s.q.after(this.prng.int(100_000, 2_000_000), () => timed.inner.setDiskFull(false));
    } else {
      this.s.stats.corruptReads++;
      this.s.trace(`io-faults: node ${i}'s next snapshot reads return flipped bits`);
      timed.corruptSnapshotReads(this.prng.int(1, 4));
    }
  }
}

function describeError(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, i = 0; e !== undefined && e !== null && i < 5; i++) {
    parts.push(e instanceof Error ? e.message : String(e));
    e = e instanceof Error ? e.cause : undefined;
  }
  return parts.join(" <- ");
}
