// Typed errors for the world's mistakes (bad input, full disks, corrupt logs): code, node, what, what to do.

export type ErrorCode =
  | "NOT_LEADER"
  | "NO_LEADER"
  | "DEADLINE_EXCEEDED"
  | "INVALID_ARGUMENT"
  | "TOO_LARGE"
  | "OVERLOADED"
  | "UNAVAILABLE"
  | "CLUSTER_MISMATCH"
  | "CORRUPT"
  | "STORAGE"
  | "CONFIG"
  | "SHUTTING_DOWN"
  | "INTERNAL";

export interface RaftKvErrorInit {
  code: ErrorCode;
  /** What failed, in a sentence. */
  message: string;
  /** The node that saw it, when known. */
  nodeId?: number;
  /** What a person should do about it. */
  hint?: string;
  cause?: unknown;
}

export class RaftKvError extends Error {
  override name = "RaftKvError";
  readonly code: ErrorCode;
  readonly nodeId: number | undefined;
  readonly hint: string | undefined;

  constructor(init: RaftKvErrorInit) {
    const where = init.nodeId === undefined ? "" : ` (node ${init.nodeId})`;
    const hint = init.hint === undefined ? "" : `; ${init.hint}`;
    super(
      `${init.code}: ${init.message}${where}${hint}`,
      init.cause === undefined ? {} : { cause: init.cause },
    );
    this.code = init.code;
    this.nodeId = init.nodeId;
    this.hint = init.hint;
  }
}
