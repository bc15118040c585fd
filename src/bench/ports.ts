// Loopback ports for the clusters a benchmark starts: a random block high in the range, so that runs of
// several checkouts on one machine do not collide on fixed ports.

/** The first of 50 consecutive ports, in 20000–59999 (below the usual ephemeral range). */
export function randomBasePort(): number {
  return 20_000 + Math.floor(Math.random() * 800) * 50;
}
