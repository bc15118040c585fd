// Quorum math: majority size and the value a majority has reached (§5.3 commit rule, leases, ReadIndex),
// and the joint quorum of thesis §4.3: while joint, both the incoming and the outgoing majority must agree.

import type { Membership } from "./membership.ts";
import type { NodeId } from "./types.ts";

/** Number of votes that make a majority of n voters. */
export function majority(n: number): number {
  return Math.floor(n / 2) + 1;
}

/** The largest value v such that a majority of `values` are >= v. */
export function quorumValue(values: readonly number[]): number {
  const sorted = values.slice().sort((a, b) => b - a);
  return sorted[majority(values.length) - 1] ?? 0;
}

/** Vote tally: "won" once a majority granted, "lost" once a majority refused, else "pending". */
export function tally(votes: ReadonlyMap<number, boolean>, voters: number): "won" | "lost" | "pending" {
  let granted = 0;
  let refused = 0;
  for (const v of votes.values()) {
    if (v) granted++;
    else refused++;
  }
  const need = majority(voters);
  if (granted >= need) return "won";
  if (refused >= need) return "lost";
  return "pending";
}

/** The largest value a majority of `voters` has reached, each voter's value from `valueFor`. An empty
 *  set of voters constrains nothing (the outgoing half outside a joint configuration). */
export function majorityValue(voters: readonly NodeId[], valueFor: (id: NodeId) => number): number {
  if (voters.length === 0) return Number.POSITIVE_INFINITY;
  return quorumValue(voters.map(valueFor));
}

/** Thesis §4.3: the largest value both majorities (incoming and, while joint, outgoing) have reached.
 *  0 when the configuration has no voters at all. */
export function jointValue(m: Membership, valueFor: (id: NodeId) => number): number {
  if (m.voters.length === 0) return 0;
  return Math.min(majorityValue(m.voters, valueFor), majorityValue(m.outgoing, valueFor));
}

/** Thesis §4.3: an election is won with a majority of each configuration, lost once either refuses. */
export function jointTally(votes: ReadonlyMap<NodeId, boolean>, m: Membership): "won" | "lost" | "pending" {
  if (m.voters.length === 0) return "lost";
  const half = (voters: readonly NodeId[]): "won" | "lost" | "pending" => {
    if (voters.length === 0) return "won";
    const mine = new Map<NodeId, boolean>();
    for (const id of voters) {
      const v = votes.get(id);
      if (v !== undefined) mine.set(id, v);
    }
    return tally(mine, voters.length);
  };
  const a = half(m.voters);
  const b = half(m.outgoing);
  if (a === "lost" || b === "lost") return "lost";
  if (a === "won" && b === "won") return "won";
  return "pending";
}
