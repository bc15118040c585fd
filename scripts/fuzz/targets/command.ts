// Fuzz target "command": decodeCommand throws only CORRUPT RaftKvErrors, and what it accepts is the
// one canonical encoding of a valid command, with byte arrays copied out of the input.

import { type ClientSession, decodeCommand, encodeCommand, type KvCommand } from "../../../src/kv/command.ts";
import { RaftKvError } from "../../../src/lib/errors.ts";
import type { Prng } from "../../../src/lib/prng.ts";
import { mutateBytes } from "../mutate.ts";
import { errorText, type FuzzTarget, finding, type Outcome } from "../target.ts";

const LIMITLESS = { maxKeyBytes: Number.MAX_SAFE_INTEGER, maxValueBytes: Number.MAX_SAFE_INTEGER };
const KEYS = ["k", "a/b/c", "ключ", "🔑x", "\ufeffk", "\u0000", "x".repeat(200)];
const CLIENT_IDS = ["c", "client-7", "é", "🙂", "x".repeat(64)];

export function randomCommand(prng: Prng): KvCommand {
  const key = prng.chance(0.7)
    ? prng.pick(KEYS)
    : String.fromCharCode(...Array.from({ length: prng.int(1, 12) }, () => prng.int(1, 0xd7ff)));
  const blob = (): Uint8Array => Uint8Array.from({ length: prng.int(0, 48) }, () => prng.int(0, 255));
  const seq = prng.pick([1, 2, 1000, 2 ** 32, Number.MAX_SAFE_INTEGER]);
  const session: ClientSession | undefined = prng.chance(0.5)
    ? { clientId: prng.pick(CLIENT_IDS), seq }
    : undefined;
  const s = session === undefined ? {} : { session };
  switch (prng.int(0, 2)) {
    case 0:
      return { op: "put", key, value: blob(), ...s };
    case 1:
      return { op: "delete", key, ...s };
    default:
      return {
        op: "cas",
        key,
        expected: prng.chance(0.3) ? null : blob(),
        value: prng.chance(0.3) ? null : blob(),
        ...s,
      };
  }
}

function seeds(prng: Prng): Uint8Array[] {
  return Array.from({ length: 300 }, () => encodeCommand(randomCommand(prng), LIMITLESS));
}

function run(input: Uint8Array): Outcome {
  let cmd: KvCommand;
  try {
    cmd = decodeCommand(input);
  } catch (e) {
    if (e instanceof RaftKvError && e.code === "CORRUPT")
      return { kind: "refused", label: e.message.replace(/\d+/g, "N").slice(0, 80) };
    return finding("command-untyped-error", `decodeCommand threw ${errorText(e)}`, e);
  }
  let again: Uint8Array;
  try {
    again = encodeCommand(cmd, LIMITLESS);
  } catch (e) {
    return finding("command-accepted-unencodable", `accepted a command encode refuses: ${errorText(e)}`, e);
  }
  if (again.length !== input.length || !again.every((b, i) => b === input[i]))
    return finding(
      "command-not-canonical",
      "accepted bytes that are not the canonical encoding of the command",
    );
  for (const v of cmd.op === "put" ? [cmd.value] : cmd.op === "cas" ? [cmd.expected, cmd.value] : [])
    if (v !== null && v.length > 0 && v.buffer === input.buffer)
      return finding("command-aliases-input", "a decoded value shares the input's buffer");
  return { kind: "accepted", label: `${cmd.op}${cmd.session === undefined ? "" : "+session"}` };
}

export const commandTarget: FuzzTarget = {
  name: "command",
  seeds,
  mutate: (input, other, prng) => mutateBytes(input, other, prng),
  run,
};
