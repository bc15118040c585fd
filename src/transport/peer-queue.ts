// Bounded per-peer outbound queue: at capacity it drops the oldest non-election message (Raft tolerates loss).

import type { Message } from "../core/types.ts";
import { assert } from "../lib/assert.ts";
import { isElectionMessage } from "./transport.ts";

export class PeerQueue {
  private items: Message[] = [];

  constructor(readonly capacity: number) {
    assert(Number.isSafeInteger(capacity) && capacity > 0, () => `PeerQueue capacity ${capacity}`);
  }

  get length(): number {
    return this.items.length;
  }

  /** Appends `m`; at capacity first drops the oldest non-election message, or, when every queued
   *  message is an election message, `m` itself if it is not one, else the oldest. Returns what
   *  was dropped, or null. */
  push(m: Message): Message | null {
    if (this.items.length < this.capacity) {
      this.items.push(m);
      return null;
    }
    const i = this.items.findIndex((q) => !isElectionMessage(q));
    if (i < 0 && !isElectionMessage(m)) return m;
    const [dropped] = this.items.splice(Math.max(i, 0), 1);
    this.items.push(m);
    assert(dropped !== undefined, () => "PeerQueue dropped nothing at capacity");
    return dropped;
  }

  /** Removes and returns everything queued, oldest first. */
  takeAll(): Message[] {
    const all = this.items;
    this.items = [];
    return all;
  }

  /** Puts messages taken by takeAll() and not sent back in front of the queue, in their order. Only
   *  for what this queue just gave out (so the capacity still holds). */
  putBack(messages: readonly Message[]): void {
    assert(
      this.items.length + messages.length <= this.capacity,
      () => `PeerQueue put back ${messages.length} onto ${this.items.length}, capacity ${this.capacity}`,
    );
    this.items = [...messages, ...this.items];
  }

  /** Removes and returns the queued messages matching `pred`, oldest first. */
  takeWhere(pred: (m: Message) => boolean): Message[] {
    const taken: Message[] = [];
    const kept: Message[] = [];
    for (const m of this.items) (pred(m) ? taken : kept).push(m);
    this.items = kept;
    return taken;
  }

  peek(): readonly Message[] {
    return this.items;
  }
}
