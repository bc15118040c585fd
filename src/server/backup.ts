// ClusterService.Snapshot (raftkv snapshot save): a consistent backup streamed from the leader. The
// image is the state machine's own snapshot image (the one followers install), read from a view taken
// once a read is linearizable there, so the backup holds every write acknowledged before the call, and
// the apply loop never pauses for it. Chunks wait for the client to take the previous ones (a slow
// reader holds the view open, not memory); at most MAX_BACKUPS stream at once per node.

import type * as grpc from "@grpc/grpc-js";
import type { NodeId } from "../core/types.ts";
import { SnapshotChunk, type SnapshotRequest } from "../gen/raftkv/v1/cluster.ts";
import { crc32c } from "../lib/crc32c.ts";
import { RaftKvError } from "../lib/errors.ts";
import { waitForDrain } from "./grpc-drain.ts";

/** Largest data field of one message (the client's default receive limit is 4 MiB). */
export const MAX_BACKUP_CHUNK_BYTES = 1024 * 1024;
/** Backups streaming at once from one node; more are refused OVERLOADED. */
export const MAX_BACKUPS = 2;

/** The state machine's image at `index`, from a consistent view (closed once, when done). */
export interface BackupSource {
  readonly index: number;
  readonly term: number;
  /** null: known only after the last chunk (sent in the stream's last message). */
  readonly sizeBytes: number | null;
  next(): Uint8Array | null;
  close(): void;
}

export interface BackupDeps {
  readonly nodeId: NodeId;
  readonly clusterId: string;
  /** On the leader, after a linearizable read barrier: the image now. Elsewhere it throws NOT_LEADER. */
  readonly take: () => Promise<BackupSource>;
  /** The leader's client address, "" when none is known (for NOT_LEADER answers). */
  readonly leaderAddress: () => string;
}

export function backupHandler(
  d: BackupDeps,
): (call: grpc.ServerWritableStream<SnapshotRequest, SnapshotChunk>) => void {
  let active = 0;
  return (call) => {
    if (active >= MAX_BACKUPS) {
      refuse(
        call,
        d,
        new RaftKvError({
          code: "OVERLOADED",
          message: `${active} backups are already streaming from node ${d.nodeId}`,
          nodeId: d.nodeId,
          hint: "wait for them to finish, or take the backup from another time",
        }),
      );
      return;
    }
    active++;
    let source: BackupSource | null = null;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      active--;
      source?.close();
    };
    call.once("cancelled", release);
    call.once("close", release);
    stream(call, d, (s) => {
      source = s;
      if (released) s.close();
    })
      .catch((err: unknown) => {
        if (!call.cancelled) refuse(call, d, asError(d.nodeId, err));
      })
      .finally(release);
  };
}

async function stream(
  call: grpc.ServerWritableStream<SnapshotRequest, SnapshotChunk>,
  d: BackupDeps,
  opened: (s: BackupSource) => void,
): Promise<void> {
  const s = await d.take();
  opened(s);
  call.write(
    SnapshotChunk.fromPartial({
      index: BigInt(s.index),
      term: BigInt(s.term),
      sizeBytes: BigInt(s.sizeBytes ?? 0),
      clusterId: d.clusterId,
      nodeId: BigInt(d.nodeId),
    }),
  );
  let crc = 0;
  let sent = 0;
  for (;;) {
    if (call.cancelled) return;
    const chunk = s.next();
    if (chunk === null) break;
    for (let at = 0; at < chunk.length; at += MAX_BACKUP_CHUNK_BYTES) {
      const part = chunk.subarray(at, Math.min(chunk.length, at + MAX_BACKUP_CHUNK_BYTES));
      crc = crc32c(part, crc);
      sent += part.length;
      if (!call.write(SnapshotChunk.fromPartial({ data: part }))) await waitForDrain(call);
      if (call.cancelled) return;
    }
  }
  if (s.sizeBytes !== null && sent !== s.sizeBytes)
    throw new RaftKvError({
      code: "INTERNAL",
      message: `the state machine's image at index ${s.index} was ${sent} bytes, announced ${s.sizeBytes}`,
      nodeId: d.nodeId,
    });
  call.write(SnapshotChunk.fromPartial({ done: true, crc32c: crc, sizeBytes: BigInt(sent) }));
  call.end();
}

function refuse(
  call: grpc.ServerWritableStream<SnapshotRequest, SnapshotChunk>,
  d: BackupDeps,
  e: RaftKvError,
): void {
  call.write(
    SnapshotChunk.fromPartial({
      errorCode: e.code,
      errorMessage: e.message,
      leaderAddress: e.code === "NOT_LEADER" ? d.leaderAddress() : "",
    }),
  );
  call.end();
}

function asError(nodeId: NodeId, err: unknown): RaftKvError {
  if (err instanceof RaftKvError) return err;
  return new RaftKvError({
    code: "INTERNAL",
    message: `backup failed: ${err instanceof Error ? err.message : String(err)}`,
    nodeId,
  });
}
