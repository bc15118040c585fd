// The dashboard of a KV node started by `raftkv serve`: KvOps for the key browser, the members' dashboard
// origins from --ui-members, the key watch over the node's MVCC state (KvState.current), the fault
// buttons only when `raftkv local` set its control switch.

import type { StoreResult } from "../kv/store-state-machine.ts";
import { effectiveLeaseMs, type ServerConfig } from "../server/config.ts";
import type { RaftNode } from "../server/embed.ts";
import { KvOps } from "../server/kv-ops.ts";
import type { KvState } from "../server/kv-state.ts";
import type { OperatorRoute } from "../server/operator-http.ts";
import { controlFromEnv } from "./control-switch.ts";
import { Dashboard } from "./dashboard.ts";

export function kvDashboard(
  config: ServerConfig,
  members: ReadonlyMap<number, string>,
  env: Readonly<Record<string, string | undefined>>,
): (node: RaftNode<KvState, StoreResult>) => readonly OperatorRoute[] {
  const control = controlFromEnv(env, config.id);
  return (node) => {
    if (control !== null)
      node.logger.info(
        { control: control.url },
        "dashboard fault controls on (this node runs under `raftkv local`)",
      );
    return [
      new Dashboard({
        node,
        keys: new KvOps(node, { maxKeyBytes: config.maxKeyBytes, maxValueBytes: config.maxValueBytes }),
        watchSource: () => node.stateMachine.current,
        watchLimits: { maxPrefixBytes: config.maxKeyBytes },
        maxValueBytes: config.maxValueBytes,
        leaseMs: effectiveLeaseMs(config),
        members,
        tls: config.tlsCaFile !== null,
        control,
      }),
    ];
  };
}
