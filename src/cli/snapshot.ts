// `raftkv snapshot save FILE` (a consistent backup streamed from the leader), `raftkv snapshot status
// FILE` (what a backup holds, its checksum checked) and `raftkv snapshot restore FILE --data-dir DIR`
// (the data folder of one member of a new cluster, as `etcdctl snapshot restore` builds one).

import * as grpc from "@grpc/grpc-js";
import type { Command } from "commander";
import type { SnapshotChunk } from "../gen/raftkv/v1/cluster.ts";
import { RaftKvError } from "../lib/errors.ts";
import { parsePeers } from "../server/config.ts";
import { type BackupInfo, BackupWriter, checkBackup, restoreBackup } from "../storage/backup-file.ts";
import { RealFileSystem } from "../storage/real-file-system.ts";
import { type ClientFlags, withClientOptions } from "./kv-commands.ts";
import { clusterCall, type Reply } from "./member.ts";
import { printJson, usageError } from "./output.ts";

/** --timeout when none is given: a backup of gigabytes takes minutes. */
const SAVE_TIMEOUT_DEFAULT = "600s";

type SaveReply = Reply & { info?: BackupInfo };

/** Streams the leader's backup into `file` (FILE.part until complete and checked). */
async function save(f: ClientFlags, file: string): Promise<BackupInfo> {
  const fs = new RealFileSystem();
  const r = await clusterCall<SaveReply>(f, (c, deadline, done) => {
    const stream = c.snapshot({}, new grpc.Metadata(), { deadline });
    const writer = new BackupWriter(fs, file);
    let first = true;
    let settled = false;
    let chain = Promise.resolve();
    const settle = (err: Error | null, reply?: SaveReply): void => {
      if (settled) return;
      settled = true;
      stream.cancel();
      if (err === null && reply?.info !== undefined) return done(null, reply);
      void writer.abort().then(() => (err === null ? done(null, reply) : done(err as grpc.ServiceError)));
    };
    stream.on("data", (m: SnapshotChunk) => {
      stream.pause();
      chain = chain
        .then(async () => {
          if (settled) return;
          if (m.errorCode !== "")
            return settle(null, {
              errorCode: m.errorCode,
              errorMessage: m.errorMessage,
              leaderAddress: m.leaderAddress,
            });
          if (first) {
            first = false;
            await writer.begin(
              { clusterId: m.clusterId, nodeId: Number(m.nodeId) },
              {
                index: Number(m.index),
                term: Number(m.term),
                sizeBytes: m.sizeBytes === 0n ? null : Number(m.sizeBytes),
              },
            );
          }
          if (m.data.length > 0) await writer.write(m.data);
          if (m.done) {
            const info = await writer.finish(m.crc32c, m.sizeBytes === 0n ? null : Number(m.sizeBytes));
            settle(null, { errorCode: "", errorMessage: "", leaderAddress: "", info });
          }
        })
        .then(
          () => {
            stream.resume();
          },
          (err: unknown) => settle(err instanceof Error ? err : new Error(String(err))),
        );
    });
    stream.on("error", (err) => {
      void chain.then(() => settle(err));
    });
    stream.on("end", () => {
      void chain.then(() =>
        settle(
          new RaftKvError({
            code: "UNAVAILABLE",
            message: "the node ended the backup stream before the backup was complete",
            hint: "take the backup again",
          }),
        ),
      );
    });
  });
  return r.info!;
}

function describe(info: BackupInfo): string {
  return `index ${info.meta.index} (term ${info.meta.term}), ${info.meta.sizeBytes} bytes, of cluster "${info.source.clusterId}" (taken on node ${info.source.nodeId})`;
}

function infoJson(info: BackupInfo, file: string): Record<string, unknown> {
  return {
    ok: true,
    file,
    index: info.meta.index,
    term: info.meta.term,
    sizeBytes: info.meta.sizeBytes,
    crc32c: info.meta.crc32c,
    clusterId: info.source.clusterId,
    nodeId: info.source.nodeId,
  };
}

export function addSnapshotCommands(program: Command): void {
  const snapshot = program.command("snapshot").description("back up a running cluster, and restore a backup");
  const saveCmd = withClientOptions(
    snapshot
      .command("save <file>")
      .description(
        "a consistent backup from the leader (every write acknowledged before it), written to FILE",
      ),
    { reads: false },
  );
  saveCmd.action(async (file: string, f: ClientFlags) => {
    const timeout = saveCmd.getOptionValueSource("timeout") === "default" ? SAVE_TIMEOUT_DEFAULT : f.timeout;
    const info = await save({ ...f, timeout }, file);
    if (f.json) printJson(infoJson(info, file));
    else process.stdout.write(`saved a backup at ${describe(info)} to ${file}\n`);
  });
  snapshot
    .command("status <file>")
    .description("what a backup holds, with its checksum checked")
    .option("--json", "print JSON", false)
    .action(async (file: string, f: { json: boolean }) => {
      const info = await checkBackup(new RealFileSystem(), file);
      if (f.json) printJson(infoJson(info, file));
      else process.stdout.write(`${file}: a backup at ${describe(info)}; checksum ok\n`);
    });
  snapshot
    .command("restore <file>")
    .description(
      "build the data folder of one member of a NEW cluster from a backup (run it for every member, same --peers and --cluster-id)",
    )
    .requiredOption("--data-dir <dir>", "the new member's data folder (must not exist, or be empty)")
    .requiredOption("--id <n>", "this member's id in --peers")
    .requiredOption("--peers <list>", "every member of the new cluster: 0=host:port,1=host:port,...")
    .requiredOption("--cluster-id <id>", "the new cluster's id (not the backup's)")
    .option("--json", "print JSON", false)
    .action(
      async (
        file: string,
        f: { dataDir: string; id: string; peers: string; clusterId: string; json: boolean },
      ) => {
        if (!/^\d+$/.test(f.id))
          throw usageError(`--id "${f.id}" is not a member id`, "give a number in --peers");
        const nodeId = Number(f.id);
        const members = parsePeers(f.peers);
        const info = await restoreBackup({
          fs: new RealFileSystem(),
          file,
          dataDir: f.dataDir,
          clusterId: f.clusterId,
          nodeId,
          members,
        });
        if (f.json) {
          printJson({ ...infoJson(info, file), dataDir: f.dataDir, newClusterId: f.clusterId, id: nodeId });
          return;
        }
        const listen = members.get(nodeId)!;
        process.stdout.write(
          `restored the backup at ${describe(info)} into ${f.dataDir}, member ${nodeId} of new cluster "${f.clusterId}"\n` +
            `start it with: raftkv serve --id ${nodeId} --listen ${listen} --peers ${f.peers} --cluster-id ${f.clusterId} --data-dir ${f.dataDir}\n`,
        );
      },
    );
}
