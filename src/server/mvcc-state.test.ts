// MvccState's snapshot image and restore, and the watch hub across a restore: a watcher that was live
// on the old state gets the revisions the snapshot skipped from the new state's history, with no gap
// and no duplicate.

import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeCommand } from "../kv/command.ts";
import { encodeMvccCommand } from "../kv/mvcc-codec.ts";
import type { WatchDelivery } from "./mvcc-api.ts";
import { MvccState } from "./mvcc-state.ts";
import { WatchHub } from "./mvcc-watch-hub.ts";

const b = (s: string) => new TextEncoder().encode(s);

function fill(state: MvccState, from: number, to: number): void {
  for (let i = from; i <= to; i++)
    state.apply(
      i % 2 === 0
        ? encodeCommand({ op: "put", key: `k${i % 3}`, value: b(String(i)) })
        : encodeMvccCommand({
            op: "put",
            key: b(`k${i % 3}`),
            value: b(String(i)),
            lease: 0n,
            prevKv: false,
            ignoreValue: false,
            ignoreLease: false,
          }),
      i,
    );
}

function copy(from: MvccState, into: MvccState): void {
  const image = from.snapshot();
  const index = from.current.appliedIndex;
  assert.notEqual(image.sizeBytes, null, "MvccState sizes its image before it is read");
  const w = into.restore({ index, term: 1, sizeBytes: image.sizeBytes ?? 0 });
  for (let c = image.next(); c !== null; c = image.next()) w.push(c);
  image.close();
  w.finish();
  w.commit();
}

test("a restored MvccState equals the one imaged; a watcher crosses the restore without gaps or duplicates", async () => {
  const a = new MvccState();
  const hub = new WatchHub(() => a.current);
  a.setChangeListener((c) => hub.publish(c));
  const got: WatchDelivery[] = [];
  hub.watch(
    {
      key: new Uint8Array([0]),
      rangeEnd: new Uint8Array([0]),
      startRevision: 0,
      prevKv: true,
      noPut: false,
      noDelete: false,
      progressNotify: false,
    },
    (d) => {
      got.push(d);
    },
  );
  fill(a, 1, 3);
  const leader = new MvccState();
  fill(leader, 1, 9);
  copy(leader, a); // as a follower installs the leader's snapshot
  assert.deepEqual(
    [a.current.revision, a.current.appliedIndex, a.current.hashKv(0)],
    [leader.current.revision, 9, leader.current.hashKv(0)],
  );
  hub.sourceChanged();
  fill(a, 10, 11);
  const deadline = Date.now() + 10_000;
  while (got.length < 11 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(
    got.map((d) => (d.kind === "events" ? d.revision : d.kind)),
    [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
  );
  const last = got.at(-1);
  assert.ok(last?.kind === "events" && last.events[0]!.prevKv !== null);
});
