// The operator endpoints' verdicts: /health (can this node take part in serving linearizable requests
// now?) and /ready (should a load balancer send it clients?), as JSON with the reason, like etcd's /health.

import { constants } from "node:fs";
import { access } from "node:fs/promises";
import type { NodeId, Role } from "../core/types.ts";
import type { NodeView } from "./node-view.ts";

/** How long /health waits for a leader's read barrier (a lease, or a ReadIndex heartbeat round). */
export const HEALTH_READ_TIMEOUT_MS = 1000;
/** A WAL write that has waited this long for the disk makes the node unhealthy (a stuck or dying disk). */
export const HEALTH_STUCK_WRITE_MS = 2000;

export interface Check {
  readonly ok: boolean;
  readonly detail: string;
}

export interface HealthReport {
  readonly health: boolean;
  /** Why not healthy: the failed checks' details; null when healthy. */
  readonly reason: string | null;
  readonly node: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId | null;
  readonly checks: { readonly leader: Check; readonly read: Check; readonly storage: Check };
}

export interface ReadyReport {
  readonly ready: boolean;
  readonly reason: string | null;
  readonly node: NodeId;
  readonly leader: NodeId | null;
  readonly appliedIndex: number;
}

export interface HealthSources {
  readonly view: () => NodeView;
  /** Resolves once a linearizable read could be served here (leader: lease or ReadIndex), or throws. */
  readonly readBarrier: () => Promise<"lease" | "readIndex" | "stale">;
  /** The storage failure that stopped the node, or null. */
  readonly storageFailure: () => unknown;
  /** How long the WAL write in progress has waited (ms), or null when none is in progress. */
  readonly writeWaitingMs: () => number | null;
  readonly dataDir: string;
  readonly stopping: () => boolean;
  /** The commit index read from disk at start: ready once applied this far (the log replayed). */
  readonly recoveredCommitIndex: number;
}

export async function checkHealth(s: HealthSources): Promise<HealthReport> {
  const v = s.view();
  const leader: Check =
    v.leaderId === null
      ? { ok: false, detail: "no leader known (an election is under way, or no majority is reachable)" }
      : {
          ok: true,
          detail: v.leaderId === v.id ? "this node is the leader" : `following node ${v.leaderId}`,
        };
  const [read, storage] = await Promise.all([checkRead(s, v), checkStorage(s)]);
  const failed = [leader, read, storage].filter((c) => !c.ok).map((c) => c.detail);
  return {
    health: failed.length === 0,
    reason: failed.length === 0 ? null : failed.join("; "),
    node: v.id,
    role: v.role,
    term: v.term,
    leader: v.leaderId,
    checks: { leader, read, storage },
  };
}

async function checkRead(s: HealthSources, v: NodeView): Promise<Check> {
  if (s.stopping()) return { ok: false, detail: "the node is shutting down" };
  if (v.leaderId === null) return { ok: false, detail: "no linearizable read without a leader" };
  if (v.leaderId !== v.id) {
    // A follower serves no linearizable read itself: it needs a live link to the leader that does.
    const link = v.peers.find((p) => p.id === v.leaderId);
    return link?.connected === true
      ? { ok: true, detail: `connected to leader ${v.leaderId}` }
      : { ok: false, detail: `not connected to leader ${v.leaderId}` };
  }
  let timer: NodeJS.Timeout | undefined;
  try {
    const servedAs = await Promise.race([
      s.readBarrier(),
      new Promise<never>((_r, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no read barrier within ${HEALTH_READ_TIMEOUT_MS} ms`)),
          HEALTH_READ_TIMEOUT_MS,
        );
      }),
    ]);
    return {
      ok: true,
      detail: servedAs === "lease" ? "lease read possible" : "ReadIndex confirmed by a majority",
    };
  } catch (err) {
    return { ok: false, detail: `leader cannot serve a linearizable read: ${messageOf(err)}` };
  } finally {
    clearTimeout(timer);
  }
}

async function checkStorage(s: HealthSources): Promise<Check> {
  const failure = s.storageFailure();
  if (failure !== null && failure !== undefined)
    return { ok: false, detail: `storage failed: ${messageOf(failure)}` };
  const waiting = s.writeWaitingMs();
  if (waiting !== null && waiting >= HEALTH_STUCK_WRITE_MS)
    return { ok: false, detail: `a WAL write has waited ${Math.round(waiting)} ms for the disk` };
  try {
    await access(s.dataDir, constants.W_OK);
  } catch (err) {
    return { ok: false, detail: `data folder not writable: ${messageOf(err)}` };
  }
  return { ok: true, detail: "writable" };
}

export function checkReady(s: HealthSources): ReadyReport {
  const v = s.view();
  const reason = s.stopping()
    ? "the node is shutting down"
    : s.storageFailure() !== null
      ? "storage failed"
      : v.appliedIndex < s.recoveredCommitIndex
        ? `replaying its log (applied ${v.appliedIndex} of ${s.recoveredCommitIndex})`
        : v.leaderId === null
          ? "no leader known"
          : null;
  return { ready: reason === null, reason, node: v.id, leader: v.leaderId, appliedIndex: v.appliedIndex };
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
