// The simulator's timeline: a binary heap of callbacks ordered by simulated time, then insertion order.

interface Event {
  readonly atUs: number;
  readonly seq: number;
  readonly run: () => void;
}

export class EventQueue {
  private heap: Event[] = [];
  private seq = 0;
  get scheduled(): number {
    return this.seq;
  }
  /** Current simulated time in microseconds. */
  nowUs = 0;

  get size(): number {
    return this.heap.length;
  }

  at(atUs: number, run: () => void): void {
    const e: Event = { atUs: Math.max(atUs, this.nowUs), seq: this.seq++, run };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }

  after(delayUs: number, run: () => void): void {
    this.at(this.nowUs + delayUs, run);
  }

  /** Remove and return the next event, advancing time to it. */
  pop(): Event | undefined {
    const h = this.heap;
    const top = h[0];
    if (top === undefined) return undefined;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    this.nowUs = top.atUs;
    return top;
  }

  peekTime(): number | undefined {
    return this.heap[0]?.atUs;
  }
}

function before(a: Event, b: Event): boolean {
  return a.atUs < b.atUs || (a.atUs === b.atUs && a.seq < b.seq);
}
