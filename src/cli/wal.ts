// `raftkv wal dump|verify`: a node's log in human-readable form (SET key value term, NO-OP term), its
// hard state and snapshot metadata; or a read-only check of whether the node would start.

import type { Command } from "commander";
import { decodeCommand } from "../kv/command.ts";
import { EXIT } from "./output.ts";

const dec = new TextDecoder("utf-8", { fatal: false });

/** One KV command as the report's logs.txt spelled it: SET k v, DEL k, CAS k expected new. */
export function describeCommand(data: Uint8Array): string {
  try {
    const c = decodeCommand(data);
    const show = (v: Uint8Array | null): string => (v === null ? "<absent>" : JSON.stringify(dec.decode(v)));
    const session = c.session === undefined ? "" : ` (client ${c.session.clientId} seq ${c.session.seq})`;
    switch (c.op) {
      case "put":
        return `SET ${JSON.stringify(c.key)} ${show(c.value)}${session}`;
      case "delete":
        return `DEL ${JSON.stringify(c.key)}${session}`;
      case "cas":
        return `CAS ${JSON.stringify(c.key)} ${show(c.expected)} ${show(c.value)}${session}`;
    }
  } catch (err) {
    return `<undecodable command: ${err instanceof Error ? err.message : String(err)}>`;
  }
}

/** The storage code, loaded only when a wal command runs (other commands start faster without it). */
async function storageTools() {
  const [{ RealFileSystem }, { dumpWal, verifyWal }, { checkKvImage }] = await Promise.all([
    import("../storage/real-file-system.ts"),
    import("../storage/wal-dump.ts"),
    import("../server/check-image.ts"),
  ]);
  return { RealFileSystem, dumpWal, verifyWal, checkKvImage };
}

export function addWalCommands(program: Command, setExit: (code: number) => void): void {
  const wal = program.command("wal").description("inspect a node's write-ahead log (read-only)");
  wal
    .command("dump")
    .description("print hard state, snapshot metadata and every log entry, one a line")
    .requiredOption("--data-dir <dir>", "the node's data folder")
    .option("--json", "one JSON object a line")
    .action(async (o: { dataDir: string; json?: boolean }) => {
      const { RealFileSystem, dumpWal } = await storageTools();
      const lines = await dumpWal(new RealFileSystem(), o.dataDir, {
        json: o.json === true,
        describe: describeCommand,
      });
      for (const l of lines) process.stdout.write(`${l}\n`);
    });
  wal
    .command("verify")
    .description("check the data folder as a start would, without changing anything")
    .requiredOption("--data-dir <dir>", "the node's data folder")
    .action(async (o: { dataDir: string }) => {
      const { RealFileSystem, verifyWal, checkKvImage } = await storageTools();
      const r = await verifyWal(new RealFileSystem(), o.dataDir, checkKvImage);
      for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`);
      for (const p of r.problems) process.stdout.write(`problem: ${p}\n`);
      process.stdout.write(
        r.ok ? "ok: a node would start on this folder\n" : "refused: a node would not start\n",
      );
      if (!r.ok) setExit(EXIT.failed);
    });
}
