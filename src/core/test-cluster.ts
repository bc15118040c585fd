// A hand-driven cluster of bare cores for scenario tests: messages are held until a test delivers
// them, storage is instant, and every step is visible.

import { assert } from "../lib/assert.ts";
import { type CoreConfig, defaultCoreConfig } from "./config.ts";
import { Raft } from "./raft.ts";
import type { CoreRefusal, Entry, HardState, Message, NodeId, ReadState, SnapshotMeta } from "./types.ts";

export interface TestNode {
  raft: Raft;
  /** Durable state as the host would have written it. */
  hardState: HardState;
  entries: Entry[];
  snapshot: SnapshotMeta | null;
  /** Snapshot image bytes the host holds (to fill outgoing InstallSnapshot chunks). */
  image: Uint8Array | null;
  applied: Entry[];
  readStates: ReadState[];
  /** Messages the core refused (forged or broken peers). */
  refused: CoreRefusal[];
}

export class TestCluster {
  readonly nodes = new Map<NodeId, TestNode>();
  /** Messages sent and not yet delivered or dropped. */
  inbox: Message[] = [];
  /** Directed links that drop: "a->b". */
  readonly cut = new Set<string>();
  /** Every node the cluster drives (run() ticks them all), members or not. */
  readonly ids: NodeId[];
  private readonly tweak: (c: CoreConfig) => CoreConfig;
  /** The host's verification of a received snapshot: null to install it, or why it is bad. */
  checkSnapshot: (id: NodeId, meta: SnapshotMeta) => string | null = () => null;

  constructor(n: number, tweak: (c: CoreConfig) => CoreConfig = (c) => c) {
    this.ids = Array.from({ length: n }, (_, i) => i);
    this.tweak = tweak;
    for (const id of this.ids) this.addNode(id, this.ids.slice());
  }

  private addNode(id: NodeId, peers: readonly NodeId[]): void {
    const cfg = this.tweak(defaultCoreConfig(id, peers, 1000 + id));
    this.nodes.set(id, {
      raft: new Raft(cfg, {
        hardState: { term: 0, votedFor: null, commitIndex: 0 },
        snapshot: null,
        entries: [],
      }),
      hardState: { term: 0, votedFor: null, commitIndex: 0 },
      entries: [],
      snapshot: null,
      image: null,
      applied: [],
      readStates: [],
      refused: [],
    });
  }

  /** Start a node with an empty log and no configuration: it waits to be added (a joining member). */
  join(id: NodeId): Raft {
    assert(!this.nodes.has(id), () => `node ${id} exists`);
    this.ids.push(id);
    this.addNode(id, []);
    return this.raft(id);
  }

  /** Restart a node from what it persisted (its bootstrap peers as at its first start). */
  restart(id: NodeId, peers: readonly NodeId[]): Raft {
    const n = this.node(id);
    n.raft = new Raft(this.tweak(defaultCoreConfig(id, peers, 2000 + id)), {
      hardState: n.hardState,
      snapshot: n.snapshot,
      entries: n.entries.slice(),
    });
    n.applied = [];
    this.inbox = this.inbox.filter((m) => m.to !== id);
    return n.raft;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    assert(n !== undefined, () => `no node ${id}`);
    return n;
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft;
  }

  /** Process every node's Ready (persist instantly, queue messages, apply). */
  flush(): void {
    for (const n of this.nodes.values()) {
      while (n.raft.hasReady()) {
        const rd = n.raft.ready();
        if (rd.hardState !== null) n.hardState = rd.hardState;
        const first = rd.entries[0];
        if (first !== undefined) {
          const base = n.snapshot?.index ?? 0;
          n.entries.length = Math.min(n.entries.length, first.index - base - 1);
          n.entries.push(...rd.entries);
        }
        if (rd.installSnapshot !== null) {
          const bad = this.checkSnapshot(n.raft.id, rd.installSnapshot);
          if (bad !== null) n.raft.snapshotRejected(rd.installSnapshot, bad);
          else {
            n.snapshot = rd.installSnapshot;
            n.entries = [];
            n.raft.snapshotInstalled(rd.installSnapshot);
          }
        }
        n.refused.push(...rd.refused);
        for (const m of rd.messages) {
          if (m.type === "snapshot" && m.data.length < m.length) {
            assert(n.image !== null, () => `node ${m.from} sends a snapshot it does not hold`);
            this.inbox.push({ ...m, data: n.image.subarray(m.offset, m.offset + m.length) });
          } else this.inbox.push(m);
        }
        n.applied.push(...rd.committedEntries);
        n.readStates.push(...rd.readStates);
        n.raft.advance(rd);
      }
    }
  }

  /** Deliver queued messages (matching filter) until none are left, up to a bound. */
  deliverAll(filter: (m: Message) => boolean = () => true, maxRounds = 1000): void {
    this.flush();
    for (let round = 0; round < maxRounds; round++) {
      const batch = this.inbox.filter(filter);
      if (batch.length === 0) return;
      this.inbox = this.inbox.filter((m) => !filter(m));
      for (const m of batch) {
        if (this.cut.has(`${m.from}->${m.to}`) || this.cut.has(`*->${m.to}`) || this.cut.has(`${m.from}->*`))
          continue;
        this.raft(m.to).step(m);
      }
      this.flush();
    }
    throw new Error("deliverAll: messages kept flowing");
  }

  tick(id: NodeId, count = 1): void {
    for (let i = 0; i < count; i++) this.raft(id).tick();
    this.flush();
  }

  /** Tick every node once per step, delivering messages in between, for `steps` steps. */
  run(steps: number): void {
    for (let i = 0; i < steps; i++) {
      for (const id of this.ids) this.raft(id).tick();
      this.deliverAll();
    }
  }

  isolate(id: NodeId): void {
    this.cut.add(`${id}->*`);
    this.cut.add(`*->${id}`);
  }

  heal(): void {
    this.cut.clear();
  }

  leaders(): NodeId[] {
    return this.ids.filter((id) => this.raft(id).softState().role === "leader");
  }

  /** Make `id` leader: let every boot guard pass while the others are muted, then let `id` time out. */
  elect(id: NodeId, only: (m: Message) => boolean = () => true): void {
    const r = this.raft(id);
    const muted = this.ids.filter((o) => o !== id).map((o) => `${o}->*`);
    for (const c of muted) this.cut.add(c);
    for (let i = 0; i <= 61; i++) for (const o of this.ids) if (o !== id) this.raft(o).tick();
    this.deliverAll();
    for (const c of muted) this.cut.delete(c);
    this.inbox = [];
    for (let i = 0; i < 200 && r.softState().role !== "leader"; i++) {
      r.tick();
      this.deliverAll(only);
    }
    this.inbox = this.inbox.filter(only);
    assert(r.softState().role === "leader", () => `node ${id} did not become leader`);
  }
}

/** Node 0 leads; node 2 was cut off while 10 entries committed, and the leader compacted them into a
 *  snapshot of `imageBytes` (chunks of 4 bytes): node 2 can only catch up by InstallSnapshot. */
export function followerBehindSnapshot(imageBytes: number): { c: TestCluster; l: Raft; idx: number } {
  const c = new TestCluster(3, (cfg) => ({ ...cfg, snapshotChunkBytes: 4 }));
  c.elect(0);
  c.run(5);
  c.isolate(2);
  const enc = new TextEncoder();
  for (let i = 0; i < 10; i++) c.raft(0).propose(enc.encode(`v${i}`));
  c.deliverAll();
  c.run(5);
  const l = c.raft(0);
  const idx = l.log.committed;
  const image = new Uint8Array(imageBytes).fill(7);
  c.node(0).image = image;
  l.snapshotSaved({ index: idx, term: l.log.term(idx)!, sizeBytes: image.length, crc32c: 0 });
  l.compact(idx);
  c.heal();
  return { c, l, idx };
}
