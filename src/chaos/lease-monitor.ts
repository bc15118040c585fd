// Watches every node's Status for held leader leases and reports two nodes holding one at the same true
// instant (TESTING.md invariant 4), which a history shows only if a read happens to land in the overlap.
//
// The harness runs on the host's monotonic clock; a node runs on it too, or (a clock fault) at a known
// rate k times it, so a lease seen as "valid, r ms left" (the node's ms) in an answer that arrived between
// harness times t0 and t1 holds from some instant in [t0, t1] until at least t0 + r / k (the server
// floors r). A later sighting of another node's lease whose query started after
// the first answer arrived (t0' > t1) and which answered before t0 + r (t1' < t0 + r) proves that both
// leases held at one instant. Sightings whose intervals overlap prove nothing and are not compared.

import { performance } from "node:perf_hooks";
import type { ChaosCluster } from "./cluster.ts";

export interface LeaseSighting {
  readonly node: number;
  readonly term: number;
  /** Harness time (ms since the run started) the Status call was sent and answered. */
  readonly sentMs: number;
  readonly answeredMs: number;
  /** In harness (host) ms: the node's figure divided by its clock rate. */
  readonly remainingMs: number;
}

export interface LeaseOverlap {
  readonly first: LeaseSighting;
  readonly second: LeaseSighting;
}

const MAX_OVERLAPS_KEPT = 20;
/** Allowance for float arithmetic in the comparison. */
const MARGIN_MS = 1;

export class LeaseMonitor {
  readonly overlaps: LeaseOverlap[] = [];
  sightings = 0;
  polls = 0;
  private overlapCount = 0;
  private readonly last = new Map<number, LeaseSighting>();
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly cluster: ChaosCluster,
    private readonly intervalMs: number,
    private readonly originMs: number,
  ) {}

  /** Overlaps found, including those beyond the ones kept. */
  get overlapsFound(): number {
    return this.overlapCount;
  }

  start(): void {
    if (this.intervalMs <= 0 || this.loop !== null) return;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  /** Compares a new sighting with the latest one of every other node, then keeps it. */
  observe(s: LeaseSighting): void {
    this.sightings++;
    for (const [node, prev] of this.last) {
      if (node === s.node) continue;
      if (s.sentMs > prev.answeredMs && s.answeredMs + MARGIN_MS < prev.sentMs + prev.remainingMs) {
        this.overlapCount++;
        if (this.overlaps.length < MAX_OVERLAPS_KEPT) this.overlaps.push({ first: prev, second: s });
      }
    }
    this.last.set(s.node, s);
  }

  private async run(): Promise<void> {
    // Bounded by stop(); the cap only guards against a runaway loop (a day at 1 ms).
    for (let i = 0; i < 100_000_000 && !this.stopped; i++) {
      const started = performance.now();
      this.polls++;
      await Promise.all(this.cluster.ids.map((id) => this.poll(id)));
      const wait = this.intervalMs - (performance.now() - started);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  }

  private async poll(id: number): Promise<void> {
    const sentMs = performance.now() - this.originMs;
    const s = await this.cluster.status(id, Math.max(100, this.intervalMs * 4));
    const answeredMs = performance.now() - this.originMs;
    if (s === null || s.role !== "leader" || s.lease !== "valid" || s.leaseRemainingMs <= 0) return;
    const remainingMs = s.leaseRemainingMs / this.cluster.runningClockRate(id);
    this.observe({ node: s.nodeId, term: s.term, sentMs, answeredMs, remainingMs });
  }
}
