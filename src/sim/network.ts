// The simulated network: per-message loss, duplication, delay with reordering, and directed link cuts.

import type { NodeId } from "../core/types.ts";
import type { Prng } from "../lib/prng.ts";

export interface NetworkFaults {
  /** Probability a message is lost. */
  lossRate: number;
  /** Probability a message is delivered twice. */
  duplicateRate: number;
  /** Delay range in microseconds (uniform), which reorders messages. */
  minDelayUs: number;
  maxDelayUs: number;
}

export const CALM_NETWORK: NetworkFaults = {
  lossRate: 0,
  duplicateRate: 0,
  minDelayUs: 100,
  maxDelayUs: 1000,
};

export class SimNetwork {
  /** Directed links that drop everything: "a->b". */
  private readonly cut = new Set<string>();
  /** Directed slow links: "a->b" -> extra delay bound, µs. */
  private readonly slow = new Map<string, number>();
  faults: NetworkFaults;
  private readonly prng: Prng;
  delivered = 0;
  dropped = 0;

  constructor(prng: Prng, faults: NetworkFaults) {
    this.prng = prng;
    this.faults = faults;
  }

  cutLink(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}->${to}`);
  }

  isolate(node: NodeId, all: readonly NodeId[]): void {
    for (const other of all) {
      if (other === node) continue;
      this.cutLink(node, other);
      this.cutLink(other, node);
    }
  }

  /** Cut every link between the two sides (both directions). */
  partition(a: readonly NodeId[], b: readonly NodeId[]): void {
    for (const x of a)
      for (const y of b)
        if (x !== y) {
          this.cutLink(x, y);
          this.cutLink(y, x);
        }
  }

  /** A one-directional slow link: every message from `from` to `to` takes up to `extraUs` longer. */
  slowLink(from: NodeId, to: NodeId, extraUs: number): void {
    this.slow.set(`${from}->${to}`, extraUs);
  }

  clearSlow(from: NodeId, to: NodeId): void {
    this.slow.delete(`${from}->${to}`);
  }

  restoreLink(from: NodeId, to: NodeId): void {
    this.cut.delete(`${from}->${to}`);
  }

  cutLinks(): string[] {
    return [...this.cut];
  }

  healAll(): void {
    this.cut.clear();
    this.slow.clear();
  }

  connected(from: NodeId, to: NodeId): boolean {
    return !this.cut.has(`${from}->${to}`);
  }

  /** Delivery delays (µs) for one message: empty when lost, two when duplicated. */
  plan(from: NodeId, to: NodeId): number[] {
    if (!this.connected(from, to) || this.prng.chance(this.faults.lossRate)) {
      this.dropped++;
      return [];
    }
    const f = this.faults;
    const extra = this.slow.get(`${from}->${to}`);
    const delay = (): number =>
      this.prng.int(f.minDelayUs, f.maxDelayUs) +
      (extra === undefined ? 0 : Math.round(extra * (0.5 + 0.5 * this.prng.next())));
    this.delivered++;
    return this.prng.chance(f.duplicateRate)
      ? [delay(), delay() + this.prng.int(0, f.maxDelayUs * 3)]
      : [delay()];
  }
}
