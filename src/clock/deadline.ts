// gRPC deadlines are wall-clock dates: the one place they are turned into (and made from) budgets in ms.

/** What grpc-js hands a server as a call's deadline: a Date, ms since the epoch, or Infinity. */
export type WallDeadline = Date | number;

/** Milliseconds left until `deadline` (Infinity when none was set); may be negative. */
export function remainingMs(deadline: WallDeadline): number {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return Number.POSITIVE_INFINITY;
  return at - Date.now();
}

/** A gRPC deadline `ms` from now. */
export function deadlineIn(ms: number): Date {
  return new Date(Date.now() + Math.max(0, ms));
}
