// A data folder the cluster refuses: this node started on an empty or restored folder under an id the
// cluster knows by another incarnation, so its vote and log are gone (issue 13). Peers refuse it two ways:
// they end its streams (senderIncarnation, sent back in the status details) and their own messages to it
// address its old incarnation (recipientIncarnation, refused here). Either way this node logs, once per
// peer, an error naming the node, both incarnations and the remedy, and status reports it.

import { MAX_MEMBERS } from "../core/membership.ts";
import type { NodeId } from "../core/types.ts";
import { incarnationsOfRefusal, type Refusal } from "../transport/codec.ts";
import type { Logger } from "./logging.ts";

/** The error a refused folder logs and status shows. */
export function refusedFolderText(id: NodeId, known: string, ours: string): string {
  return (
    `node ${id}: peers refuse this data folder: the cluster knows node ${id} as incarnation ${known}, ` +
    `this folder is incarnation ${ours} (created empty or restored). Its vote and log are gone, so it ` +
    `cannot rejoin as node ${id}: run 'raftkv member remove ${id}', then add it as a new member ` +
    `('raftkv member add ADDR') and start it with the new id (and --join) on an empty data folder.`
  );
}

export class RefusedFolder {
  /** The incarnation each refusing peer knows this node by (members only: at most MAX_MEMBERS). */
  private readonly knownBy = new Map<NodeId, string>();

  constructor(
    private readonly id: NodeId,
    private readonly incarnation: string,
    private readonly log: Pick<Logger, "error">,
  ) {}

  /** A peer ended our stream to it with `details` ("reason: detail"). */
  refusedByPeer(peer: NodeId, details: string): void {
    if (!details.startsWith("senderIncarnation:")) return;
    const inc = incarnationsOfRefusal(details);
    if (inc !== null) this.note(peer, inc.known);
  }

  /** This node refused an inbound message: one addressed to another incarnation of it means that
   *  the peer knows this id by another folder. */
  refusedInbound(r: Refusal): void {
    if (r.reason !== "recipientIncarnation" || r.from === null) return;
    const inc = incarnationsOfRefusal(r.detail);
    if (inc !== null) this.note(r.from, inc.known);
  }

  /** The remedy when some peer refuses this folder, "" otherwise. */
  text(): string {
    const first = this.knownBy.entries().next();
    if (first.done === true) return "";
    const [, known] = first.value;
    const peers = [...this.knownBy.keys()].sort((a, b) => a - b);
    return `${refusedFolderText(this.id, known, this.incarnation)} (refused by node${peers.length > 1 ? "s" : ""} ${peers.join(", ")})`;
  }

  private note(peer: NodeId, known: string): void {
    if (this.knownBy.has(peer) || this.knownBy.size >= MAX_MEMBERS) return;
    this.knownBy.set(peer, known);
    this.log.error(
      { peer, knownIncarnation: known, incarnation: this.incarnation },
      refusedFolderText(this.id, known, this.incarnation),
    );
  }
}
