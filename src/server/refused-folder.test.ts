// A refused data folder: the refusals that name this node stale are recognised from both directions,
// logged once per peer with the remedy, and reported for status; others are ignored.

import assert from "node:assert/strict";
import { test } from "node:test";
import { RefusedFolder } from "./refused-folder.ts";

const OLD = "a1b2c3d4e5f60718";
const OURS = "c3d4e5f607180a1b";

test("a wiped folder refused by its peers logs the remedy once per peer and reports it", () => {
  const errors: { obj: Record<string, unknown>; msg: string }[] = [];
  const f = new RefusedFolder(3, OURS, {
    error: (obj: object, msg: string) => errors.push({ obj: obj as Record<string, unknown>, msg }),
  } as never);
  assert.equal(f.text(), "");
  // Not ours to report: another peer is the wiped one, or the refusal is of another kind.
  f.refusedByPeer(
    1,
    `recipientIncarnation: node 3 knows node 1 as incarnation ${OLD}, this data folder is incarnation ${OURS}`,
  );
  f.refusedByPeer(1, 'clusterMismatch: cluster id "x", ours is "y"');
  f.refusedInbound({
    ok: false,
    reason: "senderIncarnation",
    detail: `binds node 1 to incarnation ${OLD}, the message comes from incarnation ${OURS}`,
    peerAddress: "a",
    from: 1,
  });
  assert.equal(errors.length, 0);
  assert.equal(f.text(), "");
  // Node 1 ends our stream: it binds us to our old folder.
  const details = `senderIncarnation: the configuration binds node 3 to incarnation ${OLD}, the message comes from incarnation ${OURS}: its data folder was created empty or restored`;
  for (let i = 0; i < 5; i++) f.refusedByPeer(1, details);
  // Node 2 addresses us as our old folder.
  for (let i = 0; i < 5; i++)
    f.refusedInbound({
      ok: false,
      reason: "recipientIncarnation",
      detail: `node 2 knows node 3 as incarnation ${OLD}, this data folder is incarnation ${OURS}`,
      peerAddress: "127.0.0.1:1",
      from: 2,
    });
  assert.equal(errors.length, 2, "once per peer");
  for (const e of errors) {
    assert.match(
      e.msg,
      /^node 3: peers refuse this data folder: the cluster knows node 3 as incarnation a1b2c3d4e5f60718, this folder is incarnation c3d4e5f607180a1b \(created empty or restored\)/,
    );
    assert.match(
      e.msg,
      /run 'raftkv member remove 3', then add it as a new member \('raftkv member add ADDR'\)/,
    );
    assert.equal(e.obj["knownIncarnation"], OLD);
  }
  assert.match(f.text(), /peers refuse this data folder.*\(refused by nodes 1, 2\)$/);
});
