// The replica loop takes its snapshots in the background (issue 16): while a snapshot's write is held
// back (a slow disk, a state of gigabytes), the loop goes on committing and applying, and the leader
// goes on sending heartbeats; once the write completes, the core learns of the snapshot and compacts.
// An incoming snapshot or a stop waits for it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { defaultCoreConfig } from "../core/config.ts";
import { Raft } from "../core/raft.ts";
import type { Message } from "../core/types.ts";
import { MemStorage } from "../storage/mem-storage.ts";
import { Replica } from "./replica.ts";
import type { ReplicaStorage, StateMachine } from "./seams.ts";

/** Counts applied entries; its image is the count when snapshotStream() was called. */
class Counter implements StateMachine<number> {
  appliedIndex = 0;
  count = 0;
  apply(index: number): number {
    this.appliedIndex = index;
    return ++this.count;
  }
  applyNoop(index: number): void {
    this.appliedIndex = index;
  }
  snapshotStream() {
    const image = new Uint8Array(8);
    new DataView(image.buffer).setFloat64(0, this.count);
    let sent = false;
    return {
      appliedIndex: this.appliedIndex,
      sizeBytes: image.length,
      next: () => {
        if (sent) return null;
        sent = true;
        return image;
      },
      close: () => undefined,
    };
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

test("a snapshot held back by a slow write neither blocks commits nor heartbeats, and compacts once written", async () => {
  // Two voters: node 1 only receives (its answers are fed back by hand), so node 0's heartbeats show.
  const core = new Raft(defaultCoreConfig(0, [0, 1], 7), {
    hardState: { term: 0, votedFor: null, commitIndex: 0 },
    snapshot: null,
    entries: [],
  });
  const mem = new MemStorage();
  await mem.open();
  let release: (() => void) | null = null;
  let snapshotsStarted = 0;
  const storage: ReplicaStorage = {
    save: (hs, entries, sync) => mem.save(hs, entries, sync),
    saveSnapshotStream: async (meta, next) => {
      snapshotsStarted++;
      await new Promise<void>((r) => (release = r));
      return mem.saveSnapshotStream(meta, next);
    },
    writeSnapshotChunk: (meta, offset, data) => mem.writeSnapshotChunk(meta, offset, data),
    readIncomingSnapshotChunk: (meta, offset, length) => mem.readIncomingSnapshotChunk(meta, offset, length),
    installIncomingSnapshot: (meta) => mem.installIncomingSnapshot(meta),
    readSnapshotChunk: (meta, offset, length) => mem.readSnapshotChunk(meta, offset, length),
  };
  const sent: Message[] = [];
  let now = 0;
  const sm = new Counter();
  const replica = new Replica<number>({
    core,
    storage,
    sender: { send: (msgs) => sent.push(...msgs) },
    stateMachine: sm,
    restore: () => {
      throw new Error("no restore in this test");
    },
    clock: { nowMs: () => now },
    bootMs: 0,
    tickMs: 10,
    snapshotEveryEntries: 5,
    keepEntriesAfterSnapshot: 0,
  });
  // Node 1 answers whatever node 0 sends it, acknowledging everything.
  const answer = async (): Promise<void> => {
    await settle();
    const out = sent.splice(0);
    for (const m of out) {
      if (m.type === "vote")
        replica.receive({
          type: "voteResponse",
          from: 1,
          to: 0,
          term: m.term,
          granted: true,
          preVote: m.preVote,
          leaseRemainingTicks: 0,
        });
      else if (m.type === "append")
        replica.receive({
          type: "appendResponse",
          from: 1,
          to: 0,
          term: m.term,
          success: true,
          matchIndex: m.prevLogIndex + m.entries.length,
          conflictTerm: 0,
          conflictIndex: 0,
          round: m.round,
        });
    }
    await settle();
  };
  for (let i = 0; i < 200 && core.softState().role !== "leader"; i++) {
    now += 10;
    replica.tick();
    await answer();
  }
  assert.equal(core.softState().role, "leader");
  const results: Promise<unknown>[] = [];
  for (let i = 0; i < 6; i++) {
    results.push(replica.propose(new Uint8Array([i])));
    await answer();
  }
  await Promise.all(results);
  assert.equal(snapshotsStarted, 1, "a snapshot is due after 5 entries and is being written");
  assert.ok(release !== null);
  const compactedBefore = core.log.snapshotIndex;
  // The write is held: commits and heartbeats go on.
  for (let i = 0; i < 4; i++) {
    results.push(replica.propose(new Uint8Array([10 + i])));
    await answer();
  }
  await Promise.all(results);
  assert.equal(sm.count, 10, "every proposal applied while the snapshot was being written");
  let heartbeats = 0;
  for (let i = 0; i < 30; i++) {
    now += 10;
    replica.tick();
    await settle();
    heartbeats += sent.filter((m) => m.type === "append" && m.entries.length === 0).length;
    await answer();
  }
  assert.ok(heartbeats > 0, "the leader sent heartbeats while its snapshot was held");
  assert.equal(core.log.snapshotIndex, compactedBefore, "nothing compacted before the snapshot is durable");
  (release as () => void)();
  await settle();
  assert.ok(core.log.snapshotIndex > compactedBefore, `compacted to ${core.log.snapshotIndex} once written`);
  replica.stop();
  await replica.idle();
});
