// Quorum math: majority size and the value a majority has reached (§5.3 commit rule, leases, ReadIndex).

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
