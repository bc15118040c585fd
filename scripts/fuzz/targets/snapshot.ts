// Fuzz target "snapshot": KvStateMachine.restore throws only CORRUPT RaftKvErrors, and a state machine
// it accepts works and writes back exactly the bytes it was restored from (an older format: bytes that
// restore to themselves).

import { encodeCommand } from "../../../src/kv/command.ts";
import { SNAPSHOT_FORMAT_VERSION } from "../../../src/kv/snapshot.ts";
import { KvStateMachine } from "../../../src/kv/state-machine.ts";
import { crc32c } from "../../../src/lib/crc32c.ts";
import { RaftKvError } from "../../../src/lib/errors.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import { littleEndian, mutateBytes } from "../mutate.ts";
import { errorText, type FuzzTarget, finding, type Outcome } from "../target.ts";
import { randomCommand } from "./command.ts";

const LIMITLESS = { maxKeyBytes: Number.MAX_SAFE_INTEGER, maxValueBytes: Number.MAX_SAFE_INTEGER };

function image(prng: Prng): Uint8Array {
  const sm = new KvStateMachine({ maxSessions: prng.pick([1, 3, 100]) });
  const count = prng.int(0, 40);
  for (let i = 1; i <= count; i++) {
    if (prng.chance(0.1)) sm.applyNoop(i);
    else if (prng.chance(0.05))
      sm.apply(i, Uint8Array.of(9, 9)); // undecodable: an error result
    else sm.apply(i, encodeCommand(randomCommand(prng), LIMITLESS));
  }
  return sm.snapshot();
}

function seeds(prng: Prng): Uint8Array[] {
  return Array.from({ length: 200 }, () => image(prng));
}

/** A body mutation, with the trailing checksum recomputed most of the time so the damage is parsed. */
function mutate(input: Uint8Array, other: Uint8Array, prng: Prng): Uint8Array {
  const fixCrc = prng.chance(0.85) && input.length >= 4;
  const body = fixCrc ? input.subarray(0, input.length - 4) : input;
  const next = mutateBytes(body, fixCrc ? other.subarray(0, Math.max(0, other.length - 4)) : other, prng);
  if (!fixCrc) return next;
  const out = new Uint8Array(next.length + 4);
  out.set(next);
  out.set(littleEndian(BigInt(crc32c(next)), 4), next.length);
  return out;
}

function run(input: Uint8Array): Outcome {
  let sm: KvStateMachine;
  try {
    sm = KvStateMachine.restore(input);
  } catch (e) {
    if (e instanceof RaftKvError && e.code === "CORRUPT")
      return { kind: "refused", label: e.message.replace(/\d+/g, "N").slice(0, 80) };
    return finding("snapshot-untyped-error", `restore threw ${errorText(e)}`, e);
  }
  const label = sm.size === 0 ? "empty" : sm.sessionCount > 0 ? "keys+sessions" : "keys";
  try {
    const again = sm.snapshot();
    // An image of an older format is written back in the current one, which must then be a fixed point.
    const expected = input[0] === SNAPSHOT_FORMAT_VERSION ? input : KvStateMachine.restore(again).snapshot();
    if (again.length !== expected.length || !again.every((b, i) => b === expected[i]))
      return finding("snapshot-not-canonical", "a restored state machine writes a different snapshot");
    sm.hash();
    sm.range("", 1000);
    // It must keep working: apply the next entry.
    sm.apply(sm.appliedIndex + 1, encodeCommand({ op: "put", key: "fuzz", value: Uint8Array.of(1) }));
  } catch (e) {
    return finding("snapshot-restored-broken", `a restored state machine fails: ${errorText(e)}`, e);
  }
  return { kind: "accepted", label };
}

export const snapshotTarget: FuzzTarget = { name: "snapshot", seeds, mutate, run };
