// The watch hub on a StoreStateMachine (no node): future start revisions, progress (requested and
// progress_notify), the watcher limit, backpressure with resume(), cancel, and close.

import assert from "node:assert/strict";
import { test } from "node:test";
import { encodeMvccCommand } from "../kv/mvcc-codec.ts";
import { StoreStateMachine } from "../kv/store-state-machine.ts";
import { MemStore } from "../store/mem-store.ts";
import type { WatchDelivery, WatchRequest } from "./mvcc-api.ts";
import { WatchHub } from "./mvcc-watch-hub.ts";

const b = (s: string) => new TextEncoder().encode(s);
const ALL = new Uint8Array([0]);
const req = (o: Partial<WatchRequest> = {}): WatchRequest => ({
  key: ALL,
  rangeEnd: ALL,
  startRevision: 0,
  prevKv: false,
  noPut: false,
  noDelete: false,
  progressNotify: false,
  ...o,
});

function setup(maxBufferedEvents = 100, maxWatchers = 10) {
  const sm = new StoreStateMachine({ store: new MemStore() });
  const hub = new WatchHub(() => sm, { maxBufferedEvents, catchUpSliceEvents: 3, maxWatchers });
  sm.setChangeListener((c) => hub.publish(c));
  let index = 0;
  const put = (k: string) =>
    sm.applyAny(
      ++index,
      encodeMvccCommand({
        op: "put",
        key: b(k),
        value: b("v"),
        lease: 0n,
        prevKv: false,
        ignoreValue: false,
        ignoreLease: false,
      }),
    );
  return { sm, hub, put };
}

const settle = () => new Promise((r) => setImmediate(() => setImmediate(r)));
const kinds = (got: WatchDelivery[]) =>
  got.map((d) => (d.kind === "canceled" ? `canceled` : `${d.kind}@${d.revision}`));

test("a watch on a future revision gets the revisions from it on; progress when asked and on progress_notify", async () => {
  const { hub, put } = setup();
  const got: WatchDelivery[] = [];
  const h = hub.watch(req({ startRevision: 4, progressNotify: true }), (d) => {
    got.push(d);
  });
  for (let i = 0; i < 4; i++) put(`k${i}`); // revisions 2..5
  await settle();
  h.requestProgress();
  await settle();
  hub.progressTick();
  await settle();
  assert.deepEqual(kinds(got), ["events@4", "events@5", "progress@5", "progress@5"]);
});

test("backpressure: a callback returning false holds deliveries until resume(), in order; cancel stops them", async () => {
  const { hub, put } = setup();
  const got: WatchDelivery[] = [];
  let open = false;
  const h = hub.watch(req(), (d) => {
    got.push(d);
    return open;
  });
  put("a");
  put("b");
  put("c");
  await settle();
  assert.deepEqual(kinds(got), ["events@2"]);
  open = true;
  h.resume();
  await settle();
  assert.deepEqual(kinds(got), ["events@2", "events@3", "events@4"]);
  h.cancel();
  put("d");
  await settle();
  assert.equal(got.length, 3);
  assert.equal(hub.size, 0);
});

test("limits: watchers beyond maxWatchers are refused with a reason; close() cancels every watcher and later ones", async () => {
  const { hub } = setup(100, 2);
  const got: WatchDelivery[][] = [[], [], [], []];
  for (let i = 0; i < 3; i++)
    hub.watch(req(), (d) => {
      got[i]!.push(d);
    });
  await settle();
  assert.match(JSON.stringify(got[2]), /too many watchers on this node \(2\)/);
  hub.close("node 1 is stopping");
  hub.watch(req(), (d) => {
    got[3]!.push(d);
  });
  await settle();
  for (const i of [0, 1, 3])
    assert.deepEqual(got[i], [{ kind: "canceled", reason: "node 1 is stopping", compactRevision: 0 }]);
});
