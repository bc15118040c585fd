// Starts work items as they come, but at most `perTurn` of them in one turn of the event loop; the
// rest wait for the next turns (setImmediate), so that a burst cannot hold up the timers and I/O of
// the loop behind it (a Session stream carrying hundreds of pipelined requests in one HTTP/2 frame
// used to stall the leader's ticks and heartbeats for ~200 ms, past its lease: issue 12, finding 8).

export class TurnSlicer<T> {
  private readonly queue: T[] = [];
  private startedThisTurn = 0;
  private turnScheduled = false;

  constructor(
    private readonly perTurn: number,
    private readonly run: (item: T) => void,
    private readonly defer: (fn: () => void) => void = (fn) => setImmediate(fn),
  ) {}

  /** Items waiting for a later turn. */
  get queued(): number {
    return this.queue.length;
  }

  push(item: T): void {
    // Started at once while this turn's share lasts (a lone request waits for nothing), else queued.
    if (this.queue.length === 0 && this.startedThisTurn < this.perTurn) {
      this.startedThisTurn++;
      this.run(item);
    } else this.queue.push(item);
    this.scheduleTurn();
  }

  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    this.defer(() => this.nextTurn());
  }

  private nextTurn(): void {
    this.turnScheduled = false;
    this.startedThisTurn = 0;
    while (this.queue.length > 0 && this.startedThisTurn < this.perTurn) {
      this.startedThisTurn++;
      this.run(this.queue.shift()!);
    }
    if (this.startedThisTurn > 0) this.scheduleTurn(); // the share resets again on the next turn
  }
}
