// The nemesis: faults on a schedule drawn from a seeded PRNG. Two tracks run side by side: process faults
// and partitions one after another (kill, pause, torn, partition, powerloss, clock, lease, member,
// transfer), and link
// quality (latency, loss). Every fault heals before the next on its track starts, and everything heals when the
// run stops; a clock fault's rate stays (it is within the drift bound) until that node's next one.

import { performance } from "node:perf_hooks";
import type { Prng } from "../lib/prng.ts";
import { type ChaosCluster, sleep } from "./cluster.ts";
import { ClusterOps, memberOf } from "./members.ts";
import { CLEAN_LINK, type CutMode, type LinkConditions } from "./proxy.ts";

export const FAULT_KINDS = [
  "kill",
  "pause",
  "partition",
  "latency",
  "loss",
  "torn",
  "powerloss",
  "clock",
  "lease",
  "member",
  "transfer",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

const PROCESS_TRACK: readonly FaultKind[] = [
  "kill",
  "pause",
  "partition",
  "torn",
  "powerloss",
  "clock",
  "lease",
  "member",
  "transfer",
];
const LINK_TRACK: readonly FaultKind[] = ["latency", "loss"];

/** Bound on each step of a member replacement (a generous one: each is seconds on a loaded host). */
const MEMBER_STEP_TIMEOUT_MS = 90_000;

export type PartitionShape =
  | "isolate-leader"
  | "isolate-follower"
  | "majority-minority"
  | "bridge"
  | "one-way-out"
  | "one-way-in"
  | "flaky-links";

const SHAPES: readonly PartitionShape[] = [
  "isolate-leader",
  "isolate-follower",
  "majority-minority",
  "bridge",
  "one-way-out",
  "one-way-in",
  "flaky-links",
];

export interface FaultRecord {
  readonly kind: FaultKind;
  /** e.g. the partition shape, "leader", the latency. */
  readonly detail: string;
  readonly nodes: readonly number[];
  /** ms since the run started. */
  readonly startMs: number;
  endMs: number | null;
}

export interface NemesisOptions {
  readonly kinds: readonly FaultKind[];
  /** The largest election timeout of the nodes; pauses and gaps scale with it. */
  readonly electionTimeoutMaxMs: number;
  /** The nodes' driftBound: clock faults keep every pair of clock rates within it. */
  readonly driftBound: number;
  /** Scales the gaps between faults and how long nodes stay down and links stay cut or degraded
   *  (default 1; the short run of npm test uses less, so that every kind comes up). */
  readonly pace?: number;
  /** The clients, which lease faults ask to hold their writes for a while. */
  readonly workload?: WriteHolder;
  /** ms origin of the records (the run's start, performance.now()). */
  readonly originMs: number;
  readonly note: (line: string) => void;
}

/** What a lease fault needs of the workload. */
export interface WriteHolder {
  holdWrites(held: boolean): void;
  readonly writesInFlight: number;
}

/** Runs faults against `cluster` until stop() is called, then heals everything. */
export class Nemesis {
  readonly log: FaultRecord[] = [];
  /** Faults that could not be injected or healed (a node that would not restart, say). */
  readonly errors: string[] = [];
  /** Member replacements finished, and how many of the new members caught up by a snapshot. */
  readonly replacements = { done: 0, bySnapshot: 0 };
  /** Leadership transfers asked for: accepted by the leader, or refused / of unknown outcome. */
  readonly transfers = { done: 0, refused: 0 };
  private stopped = false;
  private readonly wakers = new Set<() => void>();
  private readonly ops: ClusterOps;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly prng: Prng,
    private readonly o: NemesisOptions,
  ) {
    this.ops = new ClusterOps(cluster);
  }

  /** Resolves when both tracks have stopped (after stop()). Faults in progress are healed by then. */
  async run(): Promise<void> {
    const processKinds = this.o.kinds.filter((k) => PROCESS_TRACK.includes(k));
    const linkKinds = this.o.kinds.filter((k) => LINK_TRACK.includes(k));
    try {
      await Promise.all([
        this.track(processKinds, this.prng.fork()),
        this.track(linkKinds, this.prng.fork()),
      ]);
    } finally {
      this.ops.close();
    }
  }

  stop(): void {
    this.stopped = true;
    for (const w of [...this.wakers]) w();
  }

  counts(): Record<FaultKind, number> {
    const out = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>;
    for (const r of this.log) out[r.kind]++;
    return out;
  }

  private async track(kinds: readonly FaultKind[], prng: Prng): Promise<void> {
    if (kinds.length === 0) return;
    const e = this.o.electionTimeoutMaxMs;
    // Rounds of every kind in a shuffled order: each kind comes up within any 2 * kinds.length faults.
    // The loop bound is far above what a run reaches; stop() ends it.
    let round: FaultKind[] = [];
    for (let i = 0; i < 1_000_000 && !this.stopped; i++) {
      await this.nap(this.paced(prng.int(Math.round(e), Math.round(5 * e))));
      if (this.stopped) return;
      if (round.length === 0) round = prng.shuffle(kinds);
      const kind = round.pop()!;
      try {
        // A fault that found nothing to act on (a lease fault with no leader) comes up again next, so
        // coverage never depends on the cluster's state at one moment.
        if (!(await this.inject(kind, prng))) round.push(kind);
      } catch (err) {
        const msg = `fault ${kind} failed: ${err instanceof Error ? err.message : String(err)}`;
        this.errors.push(msg);
        this.o.note(msg);
      }
    }
  }

  /** Injects one fault and heals it; false when it found nothing to act on and was skipped. */
  private async inject(kind: FaultKind, prng: Prng): Promise<boolean> {
    switch (kind) {
      case "kill":
      case "torn":
      case "powerloss":
        await this.killRestart(prng, kind);
        return true;
      case "clock":
        await this.clockRate(prng);
        return true;
      case "lease":
        return this.leaseTrap(prng);
      case "member":
        return this.replaceMember(prng);
      case "transfer":
        return this.transfer(prng);
      case "pause":
        await this.pause(prng);
        return true;
      case "partition":
        await this.partition(prng);
        return true;
      case "latency":
        await this.linkQuality(prng, "latency");
        return true;
      case "loss":
        await this.linkQuality(prng, "loss");
        return true;
    }
  }

  /** Enabled kinds not injected yet (the run keeps its faults going until this is empty). */
  uncovered(): FaultKind[] {
    const counts = this.counts();
    return this.o.kinds.filter((k) => counts[k] === 0);
  }

  /**
   * SIGKILL and restart. A kill is a process crash, which loses nothing the node wrote (the page cache
   * keeps it): one node (the leader half the time) 70 % of the time, a majority at once 20 %, every node
   * at once 10 %. A torn kill takes one node and leaves a torn record at its WAL's end. A power loss
   * restarts the nodes with only what they had synced (the test-only emulation of
   * src/storage/power-loss-file-system.ts drops unsynced data and directory entries): one node 50 %, a
   * majority 30 %, every node 20 %, since correlated power losses are where acknowledging before the
   * fsync shows.
   */
  private async killRestart(prng: Prng, kind: "kill" | "torn" | "powerloss"): Promise<void> {
    const { id, role } = await this.target(prng);
    const r = prng.next();
    const rest = prng.shuffle(this.cluster.ids.filter((x) => x !== id));
    const [one, majority] = kind === "powerloss" ? [0.5, 0.8] : [0.7, 0.9];
    const majoritySize = Math.floor(this.cluster.size / 2) + 1;
    const count = kind === "torn" || r < one ? 1 : r < majority ? majoritySize : this.cluster.size;
    const ids = [id, ...rest].slice(0, count).sort((a, b) => a - b);
    const what =
      count === 1 ? role : count === this.cluster.size ? "every node" : `a majority with the ${role}`;
    const rec = this.begin(kind, what, ids);
    if (kind === "torn") {
      const t = await this.cluster.killTorn(id);
      this.o.note(
        t === null
          ? `torn: node ${id} killed, no WAL record to tear`
          : `torn: node ${id} killed, ${t.bytes} of ${t.recordBytes} bytes of a record left at ${t.segment}:${t.offset}`,
      );
    } else await Promise.all(ids.map((x) => this.cluster.kill(x, kind === "powerloss")));
    await this.nap(this.paced(prng.int(300, 5000)));
    await Promise.all(ids.map((x) => this.cluster.startNode(x)));
    this.end(rec);
  }

  /**
   * Clock-rate trouble: one node (the leader half the time) is restarted (a process crash) with its
   * monotonic clock running at a new rate, drawn so that any two nodes' rates stay within driftBound of
   * each other: in [1/sqrt(driftBound), sqrt(driftBound)], at one of those ends 30 % of the time, back at
   * the real rate 20 %. The rate stays for the rest of the run (restarts keep it) or until the next one.
   */
  private async clockRate(prng: Prng): Promise<void> {
    const { id, role } = await this.target(prng);
    const rate = drawClockRate(prng, this.o.driftBound);
    const rec = this.begin("clock", `${role} restarted with its clock at ${rate}x`, [id]);
    this.cluster.setClockRate(id, rate);
    await this.cluster.kill(id);
    await this.cluster.startNode(id);
    this.end(rec);
  }

  /**
   * A partition aimed at leader leases (thesis §6.4.1). Clients hold their writes (they keep reading), so
   * that every follower's log catches up with the leader's; then the leader L and one follower X are cut
   * from each other, both ways. X's election timer fires, but the other followers still hear L, so they
   * must refuse to vote while L's lease may hold: X stays a follower and L keeps leading. If they vote for
   * X anyway (a build whose voters ignore the lease guard; seen as their term rising), their links to L are
   * cut at once, so that L does not hear of the new term and keeps serving lease reads from its last lease
   * while X, elected, holds one too: the lease monitor and the history show it. Writes resume, and everything heals after
   * one to three seconds.
   */
  private async leaseTrap(prng: Prng): Promise<boolean> {
    const ids = this.cluster.ids;
    const any = prng.pick(ids);
    const holdMs = this.paced(prng.int(1000, 3000));
    // Wait for a leader (one may be just being elected after another fault, slowly on a loaded host).
    let leader = await this.cluster.leader();
    const leaderDeadline = performance.now() + 20 * this.o.electionTimeoutMaxMs;
    while (leader === null && performance.now() < leaderDeadline && !this.stopped) {
      await this.nap(50);
      leader = await this.cluster.leader();
    }
    if (leader === null) {
      this.o.note("fault lease: no leader now, skipped (it comes up again next)");
      return false;
    }
    const followers = ids.filter((x) => x !== leader);
    const x = followers[any % followers.length]!;
    const w = this.o.workload;
    const rec = this.begin("lease", `leader ${leader} cut from follower ${x}, writes held`, [leader, x]);
    const cut: LinkConditions = { ...CLEAN_LINK, cut: "stall" };
    const touched: [number, number][] = [];
    const cutLink = (a: number, b: number): void => {
      this.cluster.setLink(a, b, cut);
      touched.push([a, b]);
    };
    try {
      w?.holdWrites(true);
      for (let i = 0; i < 500 && (w?.writesInFlight ?? 0) > 0 && !this.stopped; i++) await this.nap(10);
      await this.nap(150); // the last writes reach every follower
      const before = await this.cluster.status(leader);
      cutLink(leader, x);
      cutLink(x, leader);
      // The others' terms rise as soon as they vote for X (before X knows it won): cut then.
      const others = ids.filter((o) => o !== leader);
      const deadline = performance.now() + 4 * this.o.electionTimeoutMaxMs;
      let newTerm: number | null = null;
      while (newTerm === null && performance.now() < deadline && !this.stopped) {
        const all = await Promise.all(others.map((o) => this.cluster.status(o, 100)));
        for (const st of all)
          if (st !== null && before !== null && st.term > before.term)
            newTerm = Math.max(newTerm ?? 0, st.term);
        if (newTerm === null) await this.nap(5);
      }
      if (newTerm !== null) {
        for (const o of others) if (o !== x) cutLink(o, leader);
        this.o.note(
          `fault lease: the followers moved to term ${newTerm} while leader ${leader} still heard them: cut their links to ${leader}`,
        );
      } else
        this.o.note(`fault lease: follower ${x} was not elected (the other followers still heard ${leader})`);
      w?.holdWrites(false);
      await this.nap(holdMs);
    } finally {
      w?.holdWrites(false);
      for (const [a, b] of touched) this.cluster.setLink(a, b, CLEAN_LINK);
      this.end(rec);
    }
    return true;
  }

  private async pause(prng: Prng): Promise<void> {
    const { id, role } = await this.target(prng);
    const e = this.o.electionTimeoutMaxMs;
    const ms = prng.chance(0.3) ? prng.int(2 * e, 8 * e) : prng.int(e, 3 * e);
    const rec = this.begin("pause", `${role} for ${ms} ms`, [id]);
    this.cluster.pause(id);
    await this.nap(ms);
    this.cluster.resume(id);
    this.end(rec);
  }

  private async partition(prng: Prng): Promise<void> {
    const shape = prng.pick(SHAPES);
    const mode: CutMode = prng.chance(0.7) ? "stall" : "reset";
    const leader = await this.cluster.leader();
    const ids = this.cluster.ids;
    const cuts = partitionCuts(shape, ids, leader, prng);
    const nodes = [...new Set(cuts.flat())].sort((a, b) => a - b);
    const holdMs = this.paced(prng.int(1500, 10_000));
    const rec = this.begin("partition", `${shape} (${mode}) ${describeCuts(cuts)}`, nodes);
    const cut: LinkConditions = { ...CLEAN_LINK, cut: mode };
    if (shape === "flaky-links") {
      // Cut the links one by one, hold, restore them in another random order.
      for (const [a, b] of cuts) {
        this.cluster.setLink(a, b, cut);
        await this.nap(prng.int(100, 1000));
      }
      await this.nap(holdMs);
      for (const [a, b] of prng.shuffle(cuts)) {
        this.cluster.setLink(a, b, CLEAN_LINK);
        await this.nap(prng.int(100, 1000));
      }
    } else {
      for (const [a, b] of cuts) this.cluster.setLink(a, b, cut);
      await this.nap(holdMs);
      for (const [a, b] of cuts) this.cluster.setLink(a, b, CLEAN_LINK);
    }
    this.end(rec);
  }

  private async linkQuality(prng: Prng, kind: "latency" | "loss"): Promise<void> {
    const ids = this.cluster.ids;
    const all = ids.flatMap((a) => ids.filter((b) => b !== a).map((b): [number, number] => [a, b]));
    const scope = prng.pick(["all", "node", "some"] as const);
    const hub = prng.pick(ids);
    const links =
      scope === "all"
        ? all
        : scope === "node"
          ? all.filter(([a, b]) => a === hub || b === hub)
          : all.filter(() => prng.chance(0.4));
    const c: LinkConditions =
      kind === "latency"
        ? { ...CLEAN_LINK, latencyMs: prng.int(5, 120), jitterMs: prng.int(0, 60) }
        : { ...CLEAN_LINK, lossRate: prng.int(5, 80) / 1000, resetRate: prng.int(0, 3) / 1000 };
    const what =
      kind === "latency"
        ? `${c.latencyMs}+${c.jitterMs} ms`
        : `stall ${(c.lossRate * 100).toFixed(1)}%, reset ${(c.resetRate * 100).toFixed(1)}% per chunk`;
    const nodes = scope === "node" ? [hub] : [...new Set(links.flat())].sort((a, b) => a - b);
    const rec = this.begin(
      kind,
      `${what} on ${scope === "node" ? `node ${hub}'s links` : `${links.length} links`}`,
      nodes,
    );
    for (const [a, b] of links) this.cluster.setLink(a, b, c);
    await this.nap(this.paced(prng.int(2000, 10_000)));
    for (const [a, b] of links) this.cluster.setLink(a, b, CLEAN_LINK);
    this.end(rec);
  }

  /**
   * A node replaced as a machine whose disk died is (issue 13): a random one (the leader 1 time in n) is
   * removed from the configuration, killed, its data folder wiped, and added back at the same address as a
   * new member with a new id (`member add --learner`: the leader picks an id never used), started with
   * --join, left to catch up (by snapshot when the leader's log was compacted, which the run's
   * --snapshot-every-entries makes likely), then promoted. Each step is driven until the leader's member
   * list shows it done, whatever the outcome of one call (a timeout's change may have committed anyway);
   * the whole runs to its end even when the run stops meanwhile, so that every slot is a voter again.
   */
  private async replaceMember(prng: Prng): Promise<boolean> {
    const victim = prng.pick(this.cluster.ids);
    const first = await this.waitForLeaderView();
    if (first === null) {
      this.o.note("fault member: no leader now, skipped (it comes up again next)");
      return false;
    }
    const oldId = this.cluster.memberId(victim);
    const role = first.slot === victim ? "the leader" : "a follower";
    const rec = this.begin("member", `node ${victim} (member ${oldId}, ${role}) removed, wiped, added back`, [
      victim,
    ]);
    await this.until(`member ${oldId} removed`, async () => {
      const v = await this.ops.leaderView();
      if (v === null) return false;
      if (memberOf(v.list, oldId) === undefined && !v.list.joint) return true;
      if (memberOf(v.list, oldId) !== undefined) await this.ops.remove(v.slot, oldId);
      return false;
    });
    await this.cluster.kill(victim);
    const address = this.cluster.address(victim);
    let newId: number | null = null;
    await this.until(`a learner added at ${address}`, async () => {
      const v = await this.ops.leaderView();
      if (v === null) return false;
      const there = v.list.members.find((m) => m.peerAddress === address);
      if (there !== undefined) {
        newId = Number(there.id);
        return true;
      }
      const r = await this.ops.addLearner(v.slot, address);
      if (typeof r !== "string") newId = r.id;
      return false; // confirmed by the next list
    });
    const id = newId as number | null;
    if (id === null || id === oldId) throw new Error(`member: no new id for node ${victim} (got ${id})`);
    this.cluster.wipe(victim, id);
    const installsBefore = this.cluster.snapshotInstalls(victim);
    await this.cluster.startNode(victim);
    let target = -1;
    await this.until(`member ${id} caught up`, async () => {
      const v = await this.ops.leaderView();
      const m = v === null ? undefined : memberOf(v.list, id);
      if (v === null || m === undefined) return false;
      if (target < 0) target = Number(v.list.lastIndex);
      return Number(m.matchIndex) >= target;
    });
    await this.until(`member ${id} promoted`, async () => {
      const v = await this.ops.leaderView();
      const m = v === null ? undefined : memberOf(v.list, id);
      if (v === null || m === undefined) return false;
      if (m.role === "VOTER" && !v.list.joint) return true;
      if (m.role === "LEARNER") await this.ops.promote(v.slot, id);
      return false;
    });
    const bySnapshot = this.cluster.snapshotInstalls(victim) > installsBefore;
    this.replacements.done++;
    if (bySnapshot) this.replacements.bySnapshot++;
    this.o.note(
      `fault member: node ${victim} is member ${id} (was ${oldId}), a voter; caught up to index ${target} ` +
        (bySnapshot ? "by a snapshot installed from the leader" : "from the log alone"),
    );
    this.end(rec);
    return true;
  }

  /**
   * Leadership transfer (thesis §3.10) to a random other voter, asked of the leader; then a leader is
   * awaited. A transfer may be refused or time out (the target lagging, a fault on a link): that is
   * noted, not an error; the old leader's lease is checked by the lease monitor across it as always.
   */
  private async transfer(prng: Prng): Promise<boolean> {
    const any = prng.next();
    const v = await this.waitForLeaderView();
    if (v === null) {
      this.o.note("fault transfer: no leader now, skipped (it comes up again next)");
      return false;
    }
    const voters = v.list.members
      .filter((m) => m.role === "VOTER" && m.id !== v.list.nodeId)
      .map((m) => Number(m.id));
    const to = voters[Math.floor(any * voters.length)];
    const toSlot = to === undefined ? null : this.cluster.slotOf(to);
    if (to === undefined || toSlot === null) {
      this.o.note("fault transfer: no other voter now, skipped (it comes up again next)");
      return false;
    }
    const rec = this.begin("transfer", `leader ${v.slot} to node ${toSlot} (member ${to})`, [v.slot, toSlot]);
    const failed = await this.ops.transfer(v.slot, to);
    if (failed === null) this.transfers.done++;
    else this.transfers.refused++;
    const deadline = performance.now() + 20 * this.o.electionTimeoutMaxMs;
    let leader = await this.cluster.leader();
    while ((leader === null || leader === v.slot) && performance.now() < deadline) {
      await sleep(50);
      leader = await this.cluster.leader();
    }
    this.o.note(
      `fault transfer: ${failed === null ? "done" : `refused or unknown (${failed})`}; node ${leader ?? "none"} leads`,
    );
    this.end(rec);
    return true;
  }

  /** The leader's member list, waiting up to 20 election timeouts for one to answer. */
  private async waitForLeaderView(): Promise<Awaited<ReturnType<ClusterOps["leaderView"]>>> {
    const deadline = performance.now() + 20 * this.o.electionTimeoutMaxMs;
    let v = await this.ops.leaderView();
    while (v === null && performance.now() < deadline && !this.stopped) {
      await this.nap(50);
      v = await this.ops.leaderView();
    }
    return v;
  }

  /** Runs `step` until it says done, every 200 ms, for at most MEMBER_STEP_TIMEOUT_MS (not cut short by
   *  stop(): a replacement always ends with every slot a voter). */
  private async until(what: string, step: () => Promise<boolean>): Promise<void> {
    const deadline = performance.now() + MEMBER_STEP_TIMEOUT_MS;
    while (performance.now() < deadline) {
      if (await step()) return;
      await sleep(200);
    }
    throw new Error(`${what}: not done within ${MEMBER_STEP_TIMEOUT_MS} ms`);
  }

  /** A running node, the leader half the time. */
  private async target(prng: Prng): Promise<{ id: number; role: string }> {
    const running = this.cluster.ids.filter((id) => this.cluster.state(id) === "running");
    const leader = await this.cluster.leader();
    // Both draws always happen, so the schedule's random stream does not depend on the cluster's state.
    const preferLeader = prng.chance(0.5);
    const any = prng.pick(running.length > 0 ? running : this.cluster.ids);
    if (leader !== null && running.includes(leader) && preferLeader) return { id: leader, role: "leader" };
    return { id: any, role: any === leader ? "leader" : "follower" };
  }

  private begin(kind: FaultKind, detail: string, nodes: readonly number[]): FaultRecord {
    const rec: FaultRecord = { kind, detail, nodes, startMs: this.now(), endMs: null };
    this.log.push(rec);
    this.o.note(`fault ${kind}: ${detail} [nodes ${nodes.join(",")}]`);
    return rec;
  }

  private end(rec: FaultRecord): void {
    rec.endMs = this.now();
  }

  private now(): number {
    return performance.now() - this.o.originMs;
  }

  private paced(ms: number): number {
    return Math.round(ms * (this.o.pace ?? 1));
  }

  /** Sleeps `ms`, or less if stop() is called meanwhile. */
  private nap(ms: number): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakers.add(done);
    });
  }
}

/**
 * A clock rate such that any two drawn for the same bound are within `driftBound` of each other: in
 * [1/sqrt(driftBound), sqrt(driftBound)] (a hair inside), at one of those ends 30 % of the time, 1 (the
 * real clock) 20 %; rounded to 4 decimals.
 */
export function drawClockRate(prng: Prng, driftBound: number): number {
  const edge = Math.sqrt(driftBound) * 0.999;
  const r = prng.next();
  const u = prng.next();
  const rate = r < 0.15 ? edge : r < 0.3 ? 1 / edge : r < 0.5 ? 1 : Math.exp((u * 2 - 1) * Math.log(edge));
  return Math.round(rate * 10_000) / 10_000;
}

/** The directed links (from, to) to cut for a partition of `shape`. */
export function partitionCuts(
  shape: PartitionShape,
  ids: readonly number[],
  leader: number | null,
  prng: Prng,
): [number, number][] {
  const both = (a: readonly number[], b: readonly number[]): [number, number][] =>
    a.flatMap((x) =>
      b.flatMap((y): [number, number][] => [
        [x, y],
        [y, x],
      ]),
    );
  const others = (x: number): number[] => ids.filter((y) => y !== x);
  // The same draws whatever the leader, so the schedule's random stream does not depend on it.
  const any = prng.pick(ids);
  const leaderOrAny = leader ?? any;
  const preferLeader = prng.chance(0.5);
  const endpoint = preferLeader ? leaderOrAny : prng.pick(ids);
  switch (shape) {
    case "isolate-leader":
      return both([leaderOrAny], others(leaderOrAny));
    case "isolate-follower": {
      const followers = ids.filter((x) => x !== leader);
      const f = followers[prng.int(0, followers.length - 1)] ?? any;
      return both([f], others(f));
    }
    case "majority-minority": {
      const s = prng.shuffle(ids);
      const k = Math.floor((ids.length - 1) / 2);
      return both(s.slice(0, k), s.slice(k));
    }
    case "bridge": {
      // One node sees both sides; the sides do not see each other.
      const s = prng.shuffle(ids);
      const rest = s.slice(1);
      const half = Math.floor(rest.length / 2);
      return both(rest.slice(0, half), rest.slice(half));
    }
    case "one-way-out":
      return others(endpoint).map((y): [number, number] => [endpoint, y]);
    case "one-way-in":
      return others(endpoint).map((y): [number, number] => [y, endpoint]);
    case "flaky-links": {
      const all = ids.flatMap((a) => others(a).map((b): [number, number] => [a, b]));
      return prng.shuffle(all).slice(0, prng.int(1, Math.max(1, Math.floor(all.length / 2))));
    }
  }
}

function describeCuts(cuts: readonly [number, number][]): string {
  return cuts.map(([a, b]) => `${a}->${b}`).join(" ");
}
