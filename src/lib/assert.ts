// Always-on invariant assertions: a crash beats silent divergence (STYLE rule 2).

export class AssertionError extends Error {
  override name = "AssertionError";
}

export function assert(cond: unknown, message: () => string): asserts cond {
  if (!cond) throw new AssertionError(message());
}

export function unreachable(x: never): never {
  throw new AssertionError(`unreachable: ${JSON.stringify(x)}`);
}
