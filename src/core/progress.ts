// The leader's view of one follower: match/next indexes, probe/replicate/snapshot state, inflight window.

import { assert } from "../lib/assert.ts";
import type { SnapshotMeta } from "./types.ts";

export type ProgressState = "probe" | "replicate" | "snapshot";

export class Progress {
  /** Highest index known replicated on the follower. */
  match = 0;
  /** Next index to send. */
  next: number;
  state: ProgressState = "probe";
  /** In probe state: one message was sent and we wait for its answer or the next heartbeat. */
  probeSent = false;
  /** Last indexes of AppendEntries in flight (replicate state), oldest first. */
  inflight: number[] = [];
  /** Entry data bytes of each message in `inflight`, and their sum. */
  private inflightSizes: number[] = [];
  inflightBytes = 0;
  /** Highest heartbeat round this follower acknowledged in the current term. */
  ackedRound = 0;
  /** Heard from this follower since the last check-quorum window. */
  recentActive = false;
  /** Snapshot being sent, and the next byte offset the follower expects. */
  snapshot: SnapshotMeta | null = null;
  snapshotOffset = 0;
  /** Offset of the snapshot chunk in flight (-1: none), and the tick it was sent (to resend when lost). */
  snapshotSentOffset = -1;
  snapshotSentTick = 0;

  /** Tick when match last advanced or the window last started filling (to detect a lost message). */
  lastAdvanceTick: number;

  constructor(next: number, now: number) {
    this.next = next;
    this.lastAdvanceTick = now;
  }

  private clearInflight(): void {
    this.inflight = [];
    this.inflightSizes = [];
    this.inflightBytes = 0;
  }

  becomeProbe(): void {
    this.state = "probe";
    this.probeSent = false;
    this.clearInflight();
    this.snapshot = null;
    this.next = Math.max(this.match + 1, this.next);
  }

  becomeReplicate(): void {
    this.state = "replicate";
    this.clearInflight();
    this.snapshot = null;
    this.next = this.match + 1;
  }

  becomeSnapshot(meta: SnapshotMeta): void {
    this.state = "snapshot";
    this.clearInflight();
    this.snapshot = meta;
    this.snapshotOffset = 0;
    this.snapshotSentOffset = -1;
  }

  /** May we send an AppendEntries carrying entries now? In replicate state the window is bounded in
   *  messages and in bytes (one message is always allowed, however large). */
  canSend(maxInflight: number, maxInflightBytes: number): boolean {
    switch (this.state) {
      case "probe":
        return !this.probeSent;
      case "replicate":
        return (
          this.inflight.length < maxInflight &&
          (this.inflight.length === 0 || this.inflightBytes < maxInflightBytes)
        );
      case "snapshot":
        return false;
    }
  }

  /** An AppendEntries ending at lastIndex, carrying `bytes` of entry data, was sent at tick now. */
  sent(lastIndex: number, now: number, bytes: number): void {
    if (this.state === "probe") {
      this.probeSent = true;
      return;
    }
    if (this.state === "replicate") {
      assert(lastIndex >= this.next - 1, () => `sent ${lastIndex} behind next ${this.next}`);
      this.next = lastIndex + 1;
      if (this.inflight.length === 0) this.lastAdvanceTick = now;
      this.inflight.push(lastIndex);
      this.inflightSizes.push(bytes);
      this.inflightBytes += bytes;
    }
  }

  /** The follower confirmed entries through index at tick now. Returns true if match advanced. */
  acked(index: number, now: number): boolean {
    while (this.inflight.length > 0 && this.inflight[0]! <= index) {
      this.inflight.shift();
      this.inflightBytes -= this.inflightSizes.shift() ?? 0;
    }
    if (index <= this.match) return false;
    this.lastAdvanceTick = now;
    this.match = index;
    this.next = Math.max(this.next, index + 1);
    return true;
  }
}
