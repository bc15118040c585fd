// One seeded simulation: a whole cluster in one process under drawn faults, a client workload, a
// liveness phase, and every checker. Same seed, same run.

import { type CoreConfig, maxSafeLeaseTicks } from "../core/config.ts";
import {
  bindChanges,
  type ConfChange,
  incarnationOf,
  isJoint,
  isMember,
  type Membership,
  members,
} from "../core/membership.ts";
import type { Message, NodeId } from "../core/types.ts";
import { Prng } from "../lib/prng.ts";
import { SafetyChecker } from "./checkers.ts";
import { EventQueue } from "./event-queue.ts";
import type { HistoryOp } from "./history.ts";
import { emptyIoFaultStats, type IoFaultScene, type IoFaultStats, IoFaults } from "./io-faults.ts";
import { checkHistory } from "./linearizability.ts";
import { SimNetwork } from "./network.ts";
import type { DiskContext } from "./sim-disk.ts";
import { type SimDisk, SimNode } from "./sim-node.ts";
import { SimClient, type WorkloadOptions } from "./workload.ts";

export type FaultLevel = "none" | "normal" | "heavy";

export interface SimOptions {
  seed: number;
  nodes: number;
  faults: FaultLevel;
  /** Simulated time with faults and load, ms. */
  durationMs: number;
  clients: number;
  keys: number;
  snapshotEveryEntries: number;
  trace: boolean;
  makeDisk: (id: NodeId, ctx: DiskContext) => SimDisk;
  /** Deliberately unsafe variants, to show the checkers catch them (never used by default). */
  mutate?: (cfg: CoreConfig) => CoreConfig;
  /** Leader churn episodes (see leaderChurn); drawn per seed when not given. */
  leaderChurn?: boolean;
  /** Faults aimed at I/O points and time inside nodes (io-faults.ts); on unless false. */
  ioFaults?: boolean;
  /** Membership-change episodes (see membershipEpisodes); drawn per seed when not given. */
  membership?: boolean;
  /** Wipe episodes (see wipeEpisodes): a member restarted on an empty disk under its old id, then
   *  replaced; drawn per seed when not given. */
  wipe?: boolean;
  /** Incarnation checks on delivery (the refusal of a wiped disk); on unless false (false shows what
   *  the checkers report without them). */
  incarnations?: boolean;
}

export interface SimResult {
  seed: number;
  nodes: number;
  ok: boolean;
  violations: string[];
  ops: number;
  opsOk: number;
  opsUnknown: number;
  opsChecked: number;
  simSeconds: number;
  elections: number;
  crashes: number;
  partitions: number;
  pauses: number;
  transfers: number;
  /** Leaders felled (crashed or cut off) within a few round trips of their election. */
  churned: number;
  /** Configuration changes the cluster accepted, and nodes added and retired (removed, stopped). */
  memberChanges: number;
  nodesAdded: number;
  nodesRetired: number;
  /** Members restarted on a wiped disk under their old id, and messages refused for their incarnation. */
  wipes: number;
  refusedByIncarnation: number;
  leaseReads: number;
  readIndexReads: number;
  leaderAfterHealMs: number | null;
  /** How long the members took to converge after the final reads (null: they did not). */
  convergedAfterMs: number | null;
  messagesDelivered: number;
  messagesDropped: number;
  wallMs: number;
  events: number;
  /** File operations the timed disks simulated, and crashes that found some in flight. */
  diskIos: number;
  crashesInIo: number;
  io: IoFaultStats;
  history: HistoryOp[];
}

const TICK_MS = 10;
const HEARTBEAT_TICKS = 3;
const ELECTION_MIN_TICKS = 15;
const ELECTION_MAX_TICKS = 30;
const DRIFT_BOUND = 1.05;
const MAX_ELECTION_MS = ELECTION_MAX_TICKS * TICK_MS;
/** After healing, members must converge making progress: none for this long fails (see runSeed). */
const CONVERGENCE_STALL_US = 3_000_000;
/** ...and however steady their progress, they must have converged by then. */
const CONVERGENCE_MAX_US = 30_000_000;

export function simCoreConfig(id: NodeId, peers: readonly NodeId[], seed: number): CoreConfig {
  return {
    id,
    peers,
    heartbeatTicks: HEARTBEAT_TICKS,
    electionTimeoutMinTicks: ELECTION_MIN_TICKS,
    electionTimeoutMaxTicks: ELECTION_MAX_TICKS,
    driftBound: DRIFT_BOUND,
    leaseTicks: maxSafeLeaseTicks(ELECTION_MIN_TICKS, DRIFT_BOUND),
    seed,
    preVote: true,
    checkQuorum: true,
    maxInflightMessages: 16,
    maxEntriesPerMessage: 64,
    maxBytesPerMessage: 64 * 1024,
    maxPendingProposals: 1024,
    maxUncommittedBytes: 256 * 1024,
    maxInflightBytes: 128 * 1024,
    maxEntryBytes: 64 * 1024,
    maxPendingReads: 1024,
    snapshotChunkBytes: 512,
  };
}

export async function runSeed(o: SimOptions): Promise<SimResult> {
  const wallStart = performance.now();
  const prng = new Prng(o.seed);
  const q = new EventQueue();
  const level = o.faults;
  const hbUs = HEARTBEAT_TICKS * TICK_MS * 1000;
  const net = new SimNetwork(prng.fork(), {
    lossRate: level === "none" ? 0 : prng.next() * (level === "heavy" ? 0.3 : 0.1),
    duplicateRate: level === "none" ? 0 : prng.next() * (level === "heavy" ? 0.5 : 0.1),
    minDelayUs: 100,
    maxDelayUs:
      level === "none" ? 1000 : Math.round(hbUs * (0.1 + prng.next() * (level === "heavy" ? 2.9 : 1))),
  });
  const ids = Array.from({ length: o.nodes }, (_, i) => i);
  const safety = new SafetyChecker();
  /** Invariant failures that stopped a node or the whole simulation. */
  const crashed: string[] = [];
  const trace = (msg: string): void => {
    if (o.trace) console.log(`${(q.nowUs / 1000).toFixed(3).padStart(10)} ms  ${msg}`);
  };
  const pinned = level !== "none" && prng.chance(0.3);
  // Swarm testing: protocol knobs drawn per seed, so small batches and windows get their turn.
  const knobs = {
    maxEntriesPerMessage: prng.pick([1, 2, 8, 64]),
    maxInflightMessages: prng.pick([1, 2, 16]),
    snapshotEveryEntries: prng.pick([
      o.snapshotEveryEntries,
      Math.max(5, o.snapshotEveryEntries >> 2),
      o.snapshotEveryEntries * 4,
    ]),
  };
  const diskList: SimDisk[] = [];
  /** Indexed by id: ids are handed out in order and never reused (a removed node stays, retired). */
  const nodes: SimNode[] = [];
  const initialIds = [...ids];
  // Incarnations come from a stream of their own: drawing them shifts no other draw of the seed.
  const incarnationPrng = new Prng((o.seed ^ 0x1ca4a7e5) >>> 0);
  const newIncarnation = (): string =>
    [incarnationPrng.nextU32(), incarnationPrng.nextU32()]
      .map((x) => x.toString(16).padStart(8, "0"))
      .join("");
  /** A node of the initial cluster (bootstrapped with its voters), or a new one joining with none. */
  const makeNode = (id: NodeId, prng: Prng, joining: boolean): SimNode => {
    const rate = pinned ? (id % 2 === 0 ? 1 : DRIFT_BOUND) : 1 + prng.next() * (DRIFT_BOUND - 1);
    const diskPrng = prng.fork();
    const disk = o.makeDisk(id, { q, prng: diskPrng, electionUs: MAX_ELECTION_MS * 1000 });
    diskList[id] = disk; // by id: the I/O faults find a node's disk there (a wiped node gets a new one)
    return new SimNode({
      id,
      queue: q,
      disk,
      clockRate: rate,
      clockOffsetMs: prng.int(0, 1_000_000),
      tickMs: TICK_MS,
      // A timed disk takes its time per file operation; the MemStorage twin takes it per storage call.
      diskLatencyUs: () => (disk.timed === undefined ? diskPrng.int(50, 2000) : 0),
      coreConfig: (seed) => {
        const cfg = {
          ...simCoreConfig(id, joining ? [] : initialIds, seed),
          maxEntriesPerMessage: knobs.maxEntriesPerMessage,
          maxInflightMessages: knobs.maxInflightMessages,
        };
        return o.mutate === undefined ? cfg : o.mutate(cfg);
      },
      snapshotEveryEntries: knobs.snapshotEveryEntries,
      keepEntriesAfterSnapshot: 5,
      folderIncarnation: newIncarnation(),
      checkIncarnations: o.incarnations !== false,
      prng: prng.fork(),
      hooks: {
        send: (from: NodeId, msgs: readonly Message[]) => {
          const failed = nodes[from]?.replica?.failure;
          if (failed !== null && failed !== undefined)
            crashed.push(
              `node ${from} sent ${msgs.map((m) => m.type).join(",")} at ${(q.nowUs / 1000).toFixed(3)} ms after its storage failed: ${String(failed)}`,
            );
          const sender = nodes[from];
          for (const m of msgs) {
            const env = sender?.envelopeTo(m.to);
            for (const d of net.plan(from, m.to)) q.after(d, () => nodes[m.to]?.deliver(m, env));
            io.onSent(from, m);
          }
        },
        onApply: (node, e) => {
          const core = nodes[node]?.replica?.core;
          const s = core?.softState();
          safety.observeApply(node, e, s?.role === "leader" && s.term === e.term, q.nowUs / 1000);
        },
        onFatal: (node, err) => {
          trace(`node ${node} stopped: ${String(err)}`);
          // A disk fault we injected must stop the node (it never retries and acknowledges); an
          // operator restarts it. Any other stop is a bug (an invariant failed).
          if (io.isInjected(node, err)) {
            ioStats.storageStops++;
            restartLater(node);
          } else crashed.push(`node ${node} stopped at ${(q.nowUs / 1000).toFixed(3)} ms: ${String(err)}`);
        },
        onBootFailed: (node, err) => {
          trace(`node ${node} failed to boot: ${String(err)}`);
          if (io.isInjected(node, err)) restartLater(node);
          else
            crashed.push(`node ${node} failed to boot at ${(q.nowUs / 1000).toFixed(3)} ms: ${String(err)}`);
        },
        requestPause: (node, point) => io.requestPause(node, point),
        onRead: (_node, servedAs, term) => safety.observeRead(servedAs, term, q.nowUs / 1000),
        onRefused: (node, r) => {
          // Nothing in the simulator forges messages: a refusal other than a snapshot whose image
          // failed its check means a correct node sent what no correct node sends.
          // A removed node talks until it learns of its removal (or is retired): its peers refuse it.
          if (r.reason === "snapshotRejected" || r.reason === "removedMember") return;
          crashed.push(
            `node ${node} refused a message at ${(q.nowUs / 1000).toFixed(3)} ms: ${r.reason} from node ${r.from} (${r.type}, term ${r.term}): ${r.detail}`,
          );
        },
      },
    });
  };
  for (const id of ids) nodes.push(makeNode(id, prng, false));
  const disks = diskList;
  const ioStats = emptyIoFaultStats();
  const faultEndUs = o.durationMs * 1000;
  const ioScene: IoFaultScene = {
    q,
    nodes,
    disks,
    net,
    ids,
    endUs: faultEndUs,
    electionUs: MAX_ELECTION_MS * 1000,
    heartbeatUs: hbUs,
    stats: ioStats,
    countCrash: () => stats.crashes++,
    trace,
  };
  const ioPrng = prng.fork();
  const io = new IoFaults(ioScene, ioPrng.fork());
  /** A node stopped by an injected disk fault: restarted (from what its disk holds) a little later. */
  function restartLater(node: NodeId): void {
    const n = nodes[node]!;
    const inc = n.incarnation;
    q.after(ioPrng.int(50_000, 1_000_000), () => {
      if (n.incarnation !== inc) return;
      trace(`restart node ${node} after its disk fault`);
      n.crash(ioPrng, true);
      void n.start();
    });
  }
  const stats = {
    crashes: 0,
    partitions: 0,
    pauses: 0,
    transfers: 0,
    churned: 0,
    memberChanges: 0,
    nodesAdded: 0,
    nodesRetired: 0,
    wipes: 0,
  };
  const maxEvents = 200 * o.durationMs + 2_000_000;
  const step = async (): Promise<boolean> => {
    const ev = q.pop();
    if (ev === undefined) return false;
    if (q.scheduled > maxEvents)
      throw new Error(`seed ${o.seed}: runaway simulation (${q.scheduled} events)`);
    try {
      ev.run();
    } catch (err) {
      // An assertion in the core (or anywhere in a node) thrown from an event: stop the run, report it.
      crashed.push(`invariant failed at ${(q.nowUs / 1000).toFixed(3)} ms: ${String(err)}`);
      throw new SimAborted();
    }
    await new Promise((r) => setImmediate(r));
    safety.observeRoles(nodes, q.nowUs / 1000);
    return true;
  };
  const runUntil = async (untilUs: number, stop?: () => boolean): Promise<boolean> => {
    for (;;) {
      // Work started outside an event (a boot) submits its first I/O from a promise callback.
      if ((q.peekTime() ?? Number.POSITIVE_INFINITY) > untilUs) await new Promise((r) => setImmediate(r));
      if ((q.peekTime() ?? Number.POSITIVE_INFINITY) > untilUs) break;
      if (stop?.()) return true;
      await step();
    }
    q.nowUs = Math.max(q.nowUs, untilUs);
    return stop?.() ?? false;
  };

  // Boots read the disk, which takes simulated time on a timed disk: run the timeline meanwhile.
  const booted = (): boolean => nodes.every((n) => n.up);
  for (const n of nodes) void n.start();
  await runUntil(10_000_000, booted);
  if (!booted()) throw new Error(`seed ${o.seed}: the nodes did not boot within 10 simulated seconds`);

  const history: HistoryOp[] = [];
  const workload: WorkloadOptions = {
    keys: o.keys,
    thinkUs: [20_000, 400_000],
    attemptTimeoutUs: 400_000,
    opDeadlineUs: 2_000_000,
    maxAttempts: 30,
    rpcDelayUs: [100, 2000],
  };
  const clients = Array.from(
    { length: o.clients },
    (_, i) => new SimClient(i, q, nodes, prng.fork(), workload, history),
  );
  for (const c of clients) void c.run(faultEndUs);

  const scene: FaultScene = { q, nodes, net, ids, endUs: faultEndUs, stats, trace };
  if (level !== "none") void nemesis(scene, prng.fork(), level);
  // Drawn from a fork taken after every other, so seeds without churn run exactly as they did before it.
  const churnPrng = prng.fork();
  const churn = o.leaderChurn ?? (level !== "none" && churnPrng.chance(0.4));
  if (churn) void leaderChurn(scene, churnPrng, net.faults.maxDelayUs);
  // The same again for membership episodes: a fork taken after every other one.
  const memberPrng = prng.fork();
  const cluster: Cluster = {
    addNode: () => {
      const id = nodes.length;
      const n = makeNode(id, memberPrng, true);
      nodes.push(n);
      ids.push(id);
      stats.nodesAdded++;
      trace(`membership: node ${id} starts with an empty disk`);
      void n.start();
      return n;
    },
    wipePending: false,
    retire: (n) => {
      if (n.retired) return;
      trace(`membership: retire node ${n.id}`);
      n.retire();
      stats.nodesRetired++;
      const at = ids.indexOf(n.id);
      if (at >= 0) ids.splice(at, 1);
    },
  };
  // Drawn even when the option decides, so that a seed run with membership: true (the regression
  // tests) is the run `npm run sim -- --seed N` replays; skipping the draw shifted every later one.
  const membershipDrawn = level !== "none" && memberPrng.chance(0.4);
  const membershipOn = o.membership ?? membershipDrawn;
  if (membershipOn) void membershipEpisodes(scene, memberPrng, cluster);
  // Wipes: a fork taken after every other one again. In those seeds leaders bind members to their
  // disks' incarnations at first contact, as the server does; the other seeds run as they did before
  // bindings (their config entries would move every trajectory: seed 440 then met a configuration
  // whose majority was catching up at the heal, past the liveness bound, as the convergence notes tell).
  const wipePrng = prng.fork();
  const wipeOn = o.wipe ?? (level !== "none" && wipePrng.chance(0.3));
  if (wipeOn) bindAtFirstContact(scene);
  if (wipeOn)
    void wipeEpisodes(scene, wipePrng, cluster, (victim) => {
      const old = nodes[victim]!;
      old.crash(wipePrng, true);
      old.retire();
      const fresh = makeNode(victim, wipePrng, !initialIds.includes(victim));
      fresh.wiped = true;
      nodes[victim] = fresh;
      stats.wipes++;
      trace(`wipe: node ${victim} restarts on an empty disk (incarnation ${fresh.folderIncarnation})`);
      void fresh.start();
    });
  if (level !== "none" && o.ioFaults !== false) void io.run(level);

  const violations: string[] = [];
  let leaderAfterHealMs: number | null = null;
  let convergedAfterMs: number | null = null;
  try {
    await runUntil(faultEndUs);

    // Liveness phase: heal everything, then a leader must appear and every operation must finish.
    net.healAll();
    net.faults = { lossRate: 0, duplicateRate: 0, minDelayUs: 100, maxDelayUs: 1000 };
    for (const d of disks) {
      d.timed?.inner.clearFaults();
      // Pending flipped-bit reads too: each boot of a node consumed one and refused to start on it, so a
      // node with several pending stayed down past the convergence window (seed 698).
      d.timed?.clearCorruptReads();
    }
    for (const n of nodes) {
      n.resume();
      if (!n.up) void n.start();
    }
    trace("liveness phase: healed");
    const healUs = q.nowUs;
    const hasLeader = (): boolean =>
      nodes.some((n) => {
        const core = n.replica?.core;
        return core !== undefined && core.softState().role === "leader" && n.replica!.leaseUntilMs() !== null;
      });
    // A wiped member still awaiting its remedy is a voter that never comes back: every other voter of
    // a small configuration is needed, each refusing votes for an election timeout after its boot (and
    // all of them may be booting at the heal), and the first leader then commits an older term's
    // configuration change with its NO-OP before it serves: three times the bound (seen: 1.9 and 2.3 s
    // with the held-tick catch-up; 3.4 s in seed 1332, both remaining voters restarted at the heal).
    const leaderBoundMs = (2 * MAX_ELECTION_MS + 1000) * (cluster.wipePending ? 3 : 1);
    const leaderOk = await runUntil(healUs + leaderBoundMs * 1000, hasLeader);
    leaderAfterHealMs = leaderOk ? (q.nowUs - healUs) / 1000 : null;
    if (!leaderOk)
      violations.push(
        `liveness: no leader serving within ${leaderBoundMs} ms after healing${cluster.wipePending ? " (a wiped voter awaits its remedy)" : ""}`,
      );
    await runUntil(q.nowUs + workload.opDeadlineUs + 100_000, () => clients.every((c) => !c.busy));
    if (clients.some((c) => c.busy))
      violations.push("liveness: client operations still pending after healing");

    // Final reads of every key (linearizable), which also shows no acknowledged write was lost.
    for (let k = 0; k < o.keys; k++) {
      const p = clients[0]!.op("get", `k${k}`, null, null, "readIndex");
      let done: HistoryOp | null = null;
      void p.then((h) => {
        done = h;
      });
      await runUntil(q.nowUs + workload.opDeadlineUs + 100_000, () => done !== null);
      const d = done as HistoryOp | null;
      if (d === null || d.ok !== true)
        violations.push(`liveness: final read of k${k} did not succeed after healing`);
    }

    // Convergence: every node applies the same index and holds the same state. Raft promises that a
    // live member a stable leader reaches catches up, not how fast: flow control (maxEntriesPerMessage
    // and maxInflightMessages, drawn per seed down to 1 and 1, as etcd's MaxSizePerMsg and
    // MaxInflightMsgs) and the member's disk set the pace, one entry per fsync at worst (seed 440: a
    // member added late, 197 entries behind at heal on a slow disk, caught up steadily at ~17 ms an
    // entry and met the others 3.34 s in, past the 3 s this wait used to be; seed 234: one fsync of
    // 800 ms, 3.56 s). So the wait lasts while the members make progress, and fails once none did for
    // CONVERGENCE_STALL_US (the old window: a member that stops, say on a lost append never sent
    // again, still fails, 3 s after its last progress) or after CONVERGENCE_MAX_US in all.
    const current = (): SimNode[] => currentMembers(nodes, cluster);
    const converged = (): boolean => {
      const members = current();
      const applied = members.map((n) => n.replica?.stateMachine.appliedIndex ?? -1);
      const commit = Math.max(...members.map((n) => n.replica?.core.log.committed ?? 0));
      return applied.every((a) => a === commit);
    };
    const progress = (): string =>
      current()
        .map((n) => {
          const r = n.replica;
          if (r === null) return `${n.id} down`;
          const l = r.core.log;
          return `${n.id} ${r.stateMachine.appliedIndex} ${l.lastIndex()} ${l.persisted} ${l.snapshotIndex}`;
        })
        .join(",");
    const convergeFromUs = q.nowUs;
    let seen = progress();
    let progressUs = q.nowUs;
    for (;;) {
      const untilUs = Math.min(progressUs + CONVERGENCE_STALL_US, convergeFromUs + CONVERGENCE_MAX_US);
      if (converged() || q.nowUs >= untilUs) break;
      await runUntil(Math.min(untilUs, q.nowUs + 100_000), converged);
      const now = progress();
      if (now !== seen) {
        seen = now;
        progressUs = q.nowUs;
      }
    }
    if (!converged()) {
      violations.push(
        `convergence: applied indexes never met (${((q.nowUs - convergeFromUs) / 1000).toFixed(0)} ms, the last ${((q.nowUs - progressUs) / 1000).toFixed(0)} ms without progress): ${current()
          .map((n) => describeNode(n))
          .join("; ")}`,
      );
    } else {
      convergedAfterMs = (q.nowUs - convergeFromUs) / 1000;
      const hashes = current().map((n) => (n.replica!.stateMachine as unknown as { hash(): number }).hash());
      if (new Set(hashes).size !== 1)
        violations.push(`convergence: state hashes differ: ${hashes.join(",")}`);
    }
  } catch (err) {
    // The run ended early at an invariant failure (in `crashed`); the rest is checked as it stands.
    if (!(err instanceof SimAborted)) throw err;
  }
  for (const n of nodes) n.replica?.stop("simulation over");

  violations.push(...crashed);
  safety.finish();
  violations.push(...safety.violations);
  const lin = checkHistory(history);
  for (const v of lin.violations) violations.push(`linearizability: ${v.message}`);
  if (lin.timedOutKeys.length > 0)
    violations.push(`linearizability: search budget ran out on ${lin.timedOutKeys.join(",")}`);

  return {
    seed: o.seed,
    nodes: o.nodes,
    ok: violations.length === 0,
    violations,
    ops: history.length,
    opsOk: history.filter((h) => h.ok === true).length,
    opsUnknown: lin.opsUnknownOutcome,
    opsChecked: lin.opsChecked,
    simSeconds: q.nowUs / 1e6,
    elections: safety.elections,
    crashes: stats.crashes,
    partitions: stats.partitions,
    pauses: stats.pauses,
    transfers: stats.transfers,
    churned: stats.churned,
    memberChanges: stats.memberChanges,
    nodesAdded: stats.nodesAdded,
    nodesRetired: stats.nodesRetired,
    wipes: stats.wipes,
    refusedByIncarnation: nodes.reduce((a, n) => a + n.refusedByIncarnation, 0),
    leaseReads: safety.leaseReads,
    readIndexReads: safety.readIndexReads,
    leaderAfterHealMs,
    convergedAfterMs,
    messagesDelivered: net.delivered,
    messagesDropped: net.dropped,
    wallMs: performance.now() - wallStart,
    events: q.scheduled,
    diskIos: disks.reduce((a, d) => a + (d.timed?.stats.ios ?? 0), 0),
    crashesInIo: disks.reduce((a, d) => a + (d.timed?.stats.crashesInIo ?? 0), 0),
    io: ioStats,
    history,
  };
}

/** What the fault injectors act on, and where they count and trace what they did. */
interface FaultScene {
  readonly q: EventQueue;
  readonly nodes: SimNode[];
  readonly net: SimNetwork;
  readonly ids: readonly NodeId[];
  /** Faults stop at this simulated time. */
  readonly endUs: number;
  readonly stats: Pick<
    SimResult,
    "crashes" | "partitions" | "pauses" | "transfers" | "churned" | "memberChanges"
  >;
  readonly trace: (m: string) => void;
}

function sleepIn(q: EventQueue, us: number): Promise<void> {
  return new Promise((r) => q.after(us, r));
}

/** Draws and injects faults until endUs: crashes, partitions of every shape, pauses. */
async function nemesis(scene: FaultScene, prng: Prng, level: FaultLevel): Promise<void> {
  const { q, nodes, net, ids, endUs, stats, trace } = scene;
  const sleep = (us: number): Promise<void> => sleepIn(q, us);
  const electionUs = ELECTION_MAX_TICKS * TICK_MS * 1000;
  const leader = (): SimNode | undefined => nodes.find((n) => n.replica?.core.softState().role === "leader");
  const victim = (): SimNode => {
    const l = leader();
    return l !== undefined && prng.chance(0.4) ? l : prng.pick(nodes);
  };
  const gapUs: [number, number] = level === "heavy" ? [300_000, 2_500_000] : [1_000_000, 6_000_000];
  while (q.nowUs < endUs) {
    await sleep(prng.int(gapUs[0], gapUs[1]));
    if (q.nowUs >= endUs) break;
    const kind = prng.int(0, 9);
    if (kind <= 2) {
      const n = victim();
      if (!n.up && !n.starting) continue;
      stats.crashes++;
      trace(`nemesis: crash node ${n.id}`);
      n.crash(prng);
      q.after(prng.int(100_000, 3_000_000), () => {
        if (!n.up && q.nowUs < endUs) {
          trace(`nemesis: restart node ${n.id}`);
          void n.start();
        }
      });
    } else if (kind <= 6) {
      stats.partitions++;
      const shape = partition(prng, net, ids, leader()?.id);
      trace(`nemesis: partition ${shape} (${net.cutLinks().join(" ")})`);
      const cut = net.cutLinks();
      const healUs = prng.int(300_000, 4_000_000);
      if (shape === "rolling") {
        // Restore the links one by one, in random order.
        const order = prng.shuffle(cut);
        for (const [i, link] of order.entries()) {
          q.after((healUs * (i + 1)) / order.length, () => {
            const [a, b] = link.split("->").map(Number) as [number, number];
            net.restoreLink(a, b);
          });
        }
      } else {
        q.after(healUs, () => {
          trace("nemesis: heal partition");
          net.healAll();
        });
      }
    } else if (kind === 7) {
      const l = leader();
      const to = prng.pick(ids.filter((i) => i !== l?.id));
      if (l?.replica?.core.transferLeadership(to)) {
        stats.transfers++;
        trace(`nemesis: transfer leadership ${l.id} -> ${to}`);
      }
    } else {
      const n = victim();
      stats.pauses++;
      const d = prng.int(0, 3 * electionUs);
      trace(`nemesis: pause node ${n.id} for ${(d / 1000).toFixed(1)} ms`);
      n.pause(d);
    }
  }
}

/**
 * Episodes in which each newly elected leader falls (crash, or all its links cut) within a few round
 * trips of its election, and comes back soon after. This is the Figure 8 pattern (§5.4.2): entries of
 * several terms left on minorities, and a re-elected leader that replicates an old-term entry to a
 * majority one message at a time, then falls before its own term's entry gets there. Random faults alone
 * almost never line this up.
 */
async function leaderChurn(scene: FaultScene, prng: Prng, maxDelayUs: number): Promise<void> {
  const { q, nodes, net, ids, endUs, stats, trace } = scene;
  const sleep = (us: number): Promise<void> => sleepIn(q, us);
  const pollUs = (TICK_MS * 1000) / 2;
  const hbUs = HEARTBEAT_TICKS * TICK_MS * 1000;
  let seenTerm = 0;
  while (q.nowUs < endUs) {
    await sleep(prng.int(1_000_000, 6_000_000));
    const episodeEndUs = Math.min(endUs, q.nowUs + prng.int(2_000_000, 8_000_000));
    trace("churn: episode starts");
    while (q.nowUs < episodeEndUs) {
      await sleep(pollUs);
      const l = nodes.find((n) => {
        const s = n.replica?.core.softState();
        return s !== undefined && s.role === "leader" && s.term > seenTerm;
      });
      if (l === undefined) continue;
      const term = l.replica!.core.softState().term;
      seenTerm = term;
      // Somewhere between at once and a few round trips (or heartbeats) into its term.
      await sleep(prng.int(0, 3 * Math.max(2 * maxDelayUs, hbUs)));
      const s = l.replica?.core.softState();
      if (q.nowUs >= endUs || s === undefined || s.role !== "leader" || s.term !== term) continue;
      stats.churned++;
      if (prng.chance(0.5)) {
        stats.crashes++;
        trace(`churn: crash leader ${l.id} (term ${term})`);
        l.crash(prng);
        q.after(prng.int(50_000, 1_000_000), () => {
          if (!l.up && q.nowUs < endUs) {
            trace(`churn: restart node ${l.id}`);
            void l.start();
          }
        });
      } else {
        const before = new Set(net.cutLinks());
        net.isolate(l.id, ids);
        const cut = net.cutLinks().filter((k) => !before.has(k));
        trace(`churn: cut off leader ${l.id} (term ${term})`);
        q.after(prng.int(100_000, 1_500_000), () => {
          trace(`churn: reconnect node ${l.id}`);
          for (const link of cut) {
            const [a, b] = link.split("->").map(Number) as [number, number];
            net.restoreLink(a, b);
          }
        });
      }
    }
  }
}

/** How membership episodes grow and shrink the simulated machines. */
interface Cluster {
  /** A new machine with an empty disk under an id never used before, booted (not yet a member). */
  addNode(): SimNode;
  /** A removed member's machine, stopped for good. */
  retire(n: SimNode): void;
  /** A wiped member awaits its remedy: other membership changes wait (a voter is gone meanwhile, and a
   *  change on top of that can leave no quorum that elects, as a dead machine would). */
  wipePending: boolean;
}

function servingLeader(nodes: readonly SimNode[]): SimNode | undefined {
  return nodes.find((n) => n.replica?.core.softState().role === "leader");
}

/** A leader's configuration once it committed and is not joint: what the cluster settled on. */
function settledConfiguration(n: SimNode | undefined): Membership | null {
  const core = n?.replica?.core;
  if (core === undefined || core.softState().role !== "leader") return null;
  const { membership, index } = core.configuration();
  return index <= core.log.committed && !isJoint(membership) ? membership : null;
}

/** The nodes the final checks cover: members of the settled configuration (every live one without). */
function currentMembers(nodes: readonly SimNode[], cluster: Cluster): SimNode[] {
  const m = settledConfiguration(servingLeader(nodes));
  if (m !== null) for (const n of nodes) if (m.removed.includes(n.id)) cluster.retire(n);
  return nodes.filter((n) => !n.retired && (m === null || isMember(m, n.id)));
}

/**
 * Membership episodes (thesis §4.3): learners added, caught up and promoted; voters and learners removed,
 * the leader too; a node replaced by a new machine with an empty disk under a new id; 3 -> 5 and 5 -> 3
 * in one joint step. Nodes removed by a settled configuration are retired (stopped for good). They run
 * under every other fault, which keeps going meanwhile.
 */
async function membershipEpisodes(scene: FaultScene, prng: Prng, cluster: Cluster): Promise<void> {
  const { q, nodes, endUs, stats, trace } = scene;
  const sleep = (us: number): Promise<void> => sleepIn(q, us);
  // Retire removed members as soon as a leader's settled configuration says so, through the end.
  const watch = (): void => {
    currentMembers(nodes, cluster);
    q.after(50_000, watch);
  };
  watch();
  while (q.nowUs < endUs) {
    await sleep(prng.int(300_000, 2_500_000));
    if (q.nowUs >= endUs) break;
    const l = servingLeader(nodes);
    const m = settledConfiguration(l);
    if (l === undefined || m === null || cluster.wipePending) continue;
    const { voters, learners } = m;
    const all = members(m);
    const kinds: string[] = [];
    if (all.length < 7) kinds.push("addLearner");
    if (learners.length > 0) kinds.push("promote", "promote", "removeLearner");
    if (voters.length > 3) kinds.push("removeVoter");
    if (all.length < 7) kinds.push("replace");
    if (voters.length === 3 && all.length <= 5) kinds.push("grow");
    if (voters.length === 5) kinds.push("shrink");
    const kind = prng.pick(kinds);
    const voter = (): number => (prng.chance(0.4) ? l.id : prng.pick(voters));
    const fresh: SimNode[] = [];
    const add = (): number => {
      const n = cluster.addNode();
      fresh.push(n);
      return n.id;
    };
    let changes: ConfChange[];
    switch (kind) {
      case "addLearner": {
        const id = add();
        changes = [{ type: "addLearner", id, address: `sim-${id}` }];
        break;
      }
      case "promote":
        changes = [{ type: "promote", id: prng.pick(learners) }];
        break;
      case "removeLearner":
        changes = [{ type: "remove", id: prng.pick(learners) }];
        break;
      case "removeVoter":
        changes = [{ type: "remove", id: voter() }];
        break;
      case "replace": {
        // The machine behind a voter died with its disk: a new one under a new id takes its place.
        const gone = voter();
        const id = add();
        changes = [
          { type: "remove", id: gone },
          { type: "addVoter", id, address: `sim-${id}` },
        ];
        break;
      }
      case "grow": {
        const a = add();
        const b = add();
        changes = [
          { type: "addVoter", id: a, address: `sim-${a}` },
          { type: "addVoter", id: b, address: `sim-${b}` },
        ];
        break;
      }
      default: {
        const [a, b] = prng.shuffle(voters);
        changes = [
          { type: "remove", id: a! },
          { type: "remove", id: b! },
        ];
      }
    }
    const r = l.replica?.coreCall((c) => c.proposeConfChange(changes));
    const what = changes.map((c) => `${c.type} ${c.id}`).join(", ");
    if (r?.ok === true) {
      stats.memberChanges++;
      trace(`membership: leader ${l.id} proposes ${kind}: ${what} at ${r.index}`);
    } else {
      trace(`membership: ${kind} (${what}) refused: ${r === undefined ? "leader gone" : r.detail}`);
      for (const n of fresh) cluster.retire(n);
    }
  }
}

/** How often a leader looks for members to bind (the server's BIND_RETRY_MS). */
const BIND_EVERY_US = 250_000;

/** Leaders bind members not bound yet to the incarnations their messages gave, as the server does. */
function bindAtFirstContact(scene: FaultScene): void {
  const { q, nodes, trace } = scene;
  const tick = (): void => {
    for (const n of nodes) {
      const core = n.replica?.core;
      if (core === undefined || core.softState().role !== "leader") continue;
      n.run(() => {
        const c = n.replica?.core;
        if (c === undefined || c.softState().role !== "leader") return;
        const changes = bindChanges(c.latestConfiguration(), n.id, n.folderIncarnation, n.seenIncarnations);
        if (changes.length === 0) return;
        const r = n.replica?.coreCall((x) => x.proposeConfChange(changes));
        if (r?.ok === true)
          trace(`bind: leader ${n.id} binds ${changes.map((ch) => ch.id).join(",")} at ${r.index}`);
      });
    }
    q.after(BIND_EVERY_US, tick);
  };
  q.after(BIND_EVERY_US, tick);
}

/** The remedy for a wipe is retried this long past the end of the faults. */
const REMEDY_AFTER_END_US = 60_000_000;
/** Most wipes in one seed. */
const MAX_WIPES = 3;

/**
 * Wipe episodes (issue 13): a member's machine restarts on an empty disk under its old id (its vote and
 * log gone), once every other member durably holds its binding; its peers must refuse it, so that it
 * never counts in a vote or a commit (the checkers would see a second leader in a term, or a lost
 * write). Then the remedy an operator applies: remove it, and add a new machine under a new id.
 */
async function wipeEpisodes(
  scene: FaultScene,
  prng: Prng,
  cluster: Cluster,
  wipe: (victim: NodeId) => void,
): Promise<void> {
  const { q, nodes, endUs } = scene;
  const sleep = (us: number): Promise<void> => sleepIn(q, us);
  for (let wipes = 0; wipes < MAX_WIPES && q.nowUs < endUs; ) {
    await sleep(prng.int(1_000_000, 5_000_000));
    if (q.nowUs >= endUs) break;
    const m = settledConfiguration(servingLeader(nodes));
    // Not while another change is in flight (the leader's log holds a configuration not in effect yet).
    const core = servingLeader(nodes)?.replica?.core;
    if (m === null || core === undefined || core.latestConfiguration() !== m) continue;
    const candidates = members(m).filter((id) => safeToWipe(nodes, m, id));
    if (candidates.length === 0) continue;
    const l = servingLeader(nodes)!;
    const followers = candidates.filter((id) => id !== l.id);
    // Aimed, half the time with three voters: entries commit on the leader and the victim alone (the
    // third voter cut off), then the victim is wiped and the leader crashes. Only the victim's old vote
    // and log could elect the third voter now, which lacks those entries: its vote must not count.
    const aimed =
      m.voters.length === 3 && m.voters.includes(l.id) && followers.length > 0 && prng.chance(0.5);
    const victim = aimed ? prng.pick(followers) : prng.pick(candidates);
    wipes++;
    cluster.wipePending = true;
    if (aimed) {
      const third = m.voters.find((id) => id !== l.id && id !== victim)!;
      const cut = [`${l.id}->${third}`, `${third}->${l.id}`].filter((k) => !scene.net.cutLinks().includes(k));
      for (const k of cut) scene.net.cutLink(...(k.split("->").map(Number) as [number, number]));
      scene.trace(`wipe: aimed at ${victim}: leader ${l.id} cut off from ${third}`);
      await sleep(prng.int(200_000, 1_000_000));
      wipe(victim);
      l.crash(prng);
      scene.stats.crashes++;
      for (const k of cut) scene.net.restoreLink(...(k.split("->").map(Number) as [number, number]));
      q.after(prng.int(300_000, 1_500_000), () => {
        if (!l.up && !l.retired) void l.start();
      });
    } else wipe(victim);
    await sleep(prng.int(200_000, 1_500_000));
    await replaceWiped(scene, cluster, victim);
    cluster.wipePending = false;
  }
}

/** A member whose binding every other member's disk holds (down members block: their disk is unseen). */
function safeToWipe(nodes: readonly SimNode[], m: Membership, id: NodeId): boolean {
  const inc = incarnationOf(m, id);
  const n = nodes[id];
  if (inc === undefined || n === undefined || n.retired || !n.up) return false;
  return members(m).every((other) => {
    if (other === id) return true;
    const core = nodes[other]?.replica?.core;
    if (core === undefined || nodes[other]!.retired) return false;
    const { membership, index } = core.configuration();
    return (
      incarnationOf(membership, id) === inc &&
      (index <= core.log.persisted || index <= core.log.snapshotIndex)
    );
  });
}

/** The remedy for a wiped member: remove it and add a new member under a new id in the same step,
 *  retried until a leader accepts it (past the end of the faults too: the liveness phase needs it). */
async function replaceWiped(scene: FaultScene, cluster: Cluster, victim: NodeId): Promise<void> {
  const { q, nodes, stats, trace } = scene;
  // Until it is done, however long the faults keep a leader from settling (the liveness phase heals).
  for (let attempt = 0; q.nowUs < scene.endUs + REMEDY_AFTER_END_US; attempt++) {
    await sleepIn(q, 100_000);
    const l = servingLeader(nodes);
    const m = settledConfiguration(l);
    if (l === undefined || m === null) continue;
    if (!isMember(m, victim)) break;
    const id = nodes.length; // cluster.addNode's id, taken only once the change is accepted
    const type = m.learners.includes(victim) ? "addLearner" : "addVoter";
    const changes: ConfChange[] = [
      { type: "remove", id: victim },
      { type, id, address: `sim-${id}` },
    ];
    const r = l.replica?.coreCall((c) => c.proposeConfChange(changes));
    if (r?.ok !== true) {
      if (attempt % 10 === 0)
        trace(`wipe: remedy for ${victim} refused: ${r?.ok === false ? r.detail : "leader gone"}`);
      continue;
    }
    const n = cluster.addNode();
    if (n.id !== id) throw new Error(`wipe remedy: new node ${n.id}, expected ${id}`);
    stats.memberChanges++;
    trace(`wipe: leader ${l.id} replaces wiped node ${victim} by node ${id} at ${r.index}`);
  }
  // Retire the wiped machine once a settled configuration no longer names it.
  while (q.nowUs < scene.endUs + REMEDY_AFTER_END_US) {
    const m = settledConfiguration(servingLeader(nodes));
    if (m !== null && !isMember(m, victim)) {
      cluster.retire(nodes[victim]!);
      return;
    }
    await sleepIn(q, 100_000);
  }
}

function partition(
  prng: Prng,
  net: SimNetwork,
  ids: readonly NodeId[],
  leaderId: NodeId | undefined,
): string {
  const shapes = [
    "isolateLeader",
    "isolateFollower",
    "majorityMinority",
    "bridge",
    "oneWay",
    "rolling",
    "leaderFollower",
  ] as const;
  const shape = prng.pick(shapes);
  const shuffled = prng.shuffle(ids);
  switch (shape) {
    case "isolateLeader":
      net.isolate(leaderId ?? shuffled[0]!, ids);
      break;
    case "isolateFollower":
      net.isolate(shuffled.find((i) => i !== leaderId) ?? shuffled[0]!, ids);
      break;
    case "majorityMinority": {
      const k = Math.floor(ids.length / 2);
      net.partition(shuffled.slice(0, k), shuffled.slice(k));
      break;
    }
    case "bridge": {
      // shuffled[0] sees both halves; the halves do not see each other.
      const rest = shuffled.slice(1);
      const half = Math.floor(rest.length / 2);
      net.partition(rest.slice(0, half), rest.slice(half));
      break;
    }
    case "oneWay":
      net.cutLink(shuffled[0]!, shuffled[1]!);
      break;
    case "leaderFollower": {
      // The leader and one follower lose each other; everyone else still sees both.
      const l = leaderId ?? shuffled[0]!;
      const f = shuffled.find((i) => i !== l)!;
      net.cutLink(l, f);
      net.cutLink(f, l);
      break;
    }
    case "rolling":
      for (const a of ids) for (const b of ids) if (a !== b && prng.chance(0.3)) net.cutLink(a, b);
      break;
  }
  return shape;
}

/** Thrown out of the event loop when an invariant failed: the seed's run ends and reports it. */
class SimAborted extends Error {}

function describeNode(n: SimNode): string {
  const r = n.replica;
  if (r === null) return `${n.id} down`;
  const s = r.core.softState();
  const l = r.core.log;
  const f = r.core
    .followers()
    .map((p) => `${p.id}:${p.state}/m${p.match}/n${p.next}`)
    .join(" ");
  return `${n.id} ${s.role} t${s.term} commit ${l.committed} applied ${r.stateMachine.appliedIndex} last ${l.lastIndex()} persisted ${l.persisted} snap ${l.snapshotIndex}${f === "" ? "" : ` [${f}]`}`;
}
