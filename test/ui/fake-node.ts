// A Raft node of the test's own for the dashboard (DashboardNode): a status, events it emits when told,
// a registry with the request histogram, a configuration, and leadership transfers it records.

import { Registry } from "prom-client";
import { type Membership, votersOnly } from "../../src/core/membership.ts";
import type { NodeView } from "../../src/server/node-view.ts";
import type { NodeEvent } from "../../src/server/observer.ts";
import { RequestHistogram } from "../../src/server/request-histogram.ts";
import type { DashboardNode } from "../../src/ui/dashboard.ts";

export class FakeNode implements DashboardNode {
  readonly id = 0;
  readonly registry = new Registry();
  readonly requests = new RequestHistogram(
    "raftkv_request_duration_seconds",
    "h",
    [0.001, 0.01],
    this.registry,
  );
  role: NodeView["role"] = "follower";
  term = 1;
  leaderId: number | null = 1;
  transfers: number[] = [];
  membership: Membership = { ...votersOnly([0, 1, 2]), learners: [3] };
  configIndex = 4;
  private readonly listeners = new Map<string, ((e: NodeEvent) => void)[]>();

  status(): NodeView {
    return {
      id: 0,
      clusterId: "test",
      address: "127.0.0.1:1",
      role: this.role,
      term: this.term,
      leaderId: this.leaderId,
      commitIndex: 5,
      appliedIndex: 5,
      lastLogIndex: 6,
      snapshotIndex: 0,
      lease: this.role === "leader" ? "valid" : "notLeader",
      leaseRemainingMs: this.role === "leader" ? 200 : 0,
      peers: [1, 2].map((id) => ({
        id,
        address: `127.0.0.1:${id + 1}`,
        matchIndex: this.role === "leader" ? 6 : null,
        connected: id === 1,
        queuedMessages: 0,
        sentBytes: 0,
        receivedBytes: 0,
      })),
      pid: process.pid,
      version: "0.0.0-test",
      uptimeMs: 1000,
      dataDir: "/nowhere",
    };
  }

  configuration(): { membership: Membership; index: number } {
    return { membership: this.membership, index: this.configIndex };
  }

  on(type: NodeEvent["type"], listener: (e: NodeEvent) => void): () => void {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
    return () =>
      this.listeners.set(
        type,
        (this.listeners.get(type) ?? []).filter((l) => l !== listener),
      );
  }

  emit(e: NodeEvent): void {
    for (const l of this.listeners.get(e.type) ?? []) l(e);
  }

  transferLeadership(to: number): boolean {
    if (this.role !== "leader") return false;
    this.transfers.push(to);
    return true;
  }
}
