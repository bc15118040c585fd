// Client-side errors: RaftKvError with the endpoint and attempt count, built from response headers and
// gRPC statuses, and the rule for which codes are worth retrying.

import * as grpc from "@grpc/grpc-js";
import { ErrorCode as WireErrorCode } from "../gen/raftkv/v1/client.ts";
import { type ErrorCode, RaftKvError } from "../lib/errors.ts";

export interface RaftKvClientErrorInit {
  readonly code: ErrorCode;
  readonly message: string;
  readonly nodeId?: number;
  readonly hint?: string;
  readonly cause?: unknown;
  /** The endpoint that gave the final answer, if any. */
  readonly endpoint?: string;
  readonly attempts?: number;
}

/** What a RaftKvClient call throws: a RaftKvError (code, node, what failed, what to do) plus where. */
export class RaftKvClientError extends RaftKvError {
  override name = "RaftKvClientError";
  readonly endpoint: string | undefined;
  readonly attempts: number;
  /** What failed, without the code in front or the hint after (message has both). */
  readonly detail: string;

  constructor(init: RaftKvClientErrorInit) {
    super({
      code: init.code,
      message: init.message,
      ...(init.nodeId === undefined ? {} : { nodeId: init.nodeId }),
      ...(init.hint === undefined ? {} : { hint: init.hint }),
      ...(init.cause === undefined ? {} : { cause: init.cause }),
    });
    this.endpoint = init.endpoint;
    this.attempts = init.attempts ?? 1;
    this.detail = init.message;
  }
}

const FROM_WIRE: Record<number, ErrorCode> = {
  [WireErrorCode.ERROR_CODE_NOT_LEADER]: "NOT_LEADER",
  [WireErrorCode.ERROR_CODE_NO_LEADER]: "NO_LEADER",
  [WireErrorCode.ERROR_CODE_DEADLINE_EXCEEDED]: "DEADLINE_EXCEEDED",
  [WireErrorCode.ERROR_CODE_INVALID_ARGUMENT]: "INVALID_ARGUMENT",
  [WireErrorCode.ERROR_CODE_TOO_LARGE]: "TOO_LARGE",
  [WireErrorCode.ERROR_CODE_OVERLOADED]: "OVERLOADED",
  [WireErrorCode.ERROR_CODE_UNAVAILABLE]: "UNAVAILABLE",
  [WireErrorCode.ERROR_CODE_CLUSTER_MISMATCH]: "CLUSTER_MISMATCH",
  [WireErrorCode.ERROR_CODE_CORRUPT]: "CORRUPT",
  [WireErrorCode.ERROR_CODE_STORAGE]: "STORAGE",
  [WireErrorCode.ERROR_CODE_CONFIG]: "CONFIG",
  [WireErrorCode.ERROR_CODE_SHUTTING_DOWN]: "SHUTTING_DOWN",
  [WireErrorCode.ERROR_CODE_INTERNAL]: "INTERNAL",
};

/** The typed code for a wire error code (an unknown value from a newer server reads as INTERNAL). */
export function codeFromWire(code: WireErrorCode): ErrorCode {
  return FROM_WIRE[code] ?? "INTERNAL";
}

/** Codes after which the same request may succeed if sent again (elsewhere, or later). */
export function isRetryable(code: ErrorCode): boolean {
  switch (code) {
    case "NOT_LEADER":
    case "NO_LEADER":
    case "DEADLINE_EXCEEDED":
    case "OVERLOADED":
    case "UNAVAILABLE":
    case "SHUTTING_DOWN":
    case "STORAGE":
      return true;
    case "INVALID_ARGUMENT":
    case "TOO_LARGE":
    case "CLUSTER_MISMATCH":
    case "CORRUPT":
    case "CONFIG":
    case "INTERNAL":
      return false;
    default: {
      const never: never = code;
      return never;
    }
  }
}

/** A transport-level failure (no answer from the node) as a typed error. */
export function fromGrpcError(err: grpc.ServiceError, endpoint: string, attempts = 1): RaftKvClientError {
  switch (err.code) {
    case grpc.status.UNAVAILABLE:
      return new RaftKvClientError({
        code: "UNAVAILABLE",
        message: `cannot reach ${endpoint}: ${unreachableWhy(err.details)}`,
        hint: "check that the node is running and the address is right",
        endpoint,
        attempts,
        cause: err,
      });
    case grpc.status.DEADLINE_EXCEEDED:
      return new RaftKvClientError({
        code: "DEADLINE_EXCEEDED",
        message: `${endpoint} did not answer in time`,
        endpoint,
        attempts,
        cause: err,
      });
    case grpc.status.RESOURCE_EXHAUSTED:
      return new RaftKvClientError({
        code: "TOO_LARGE",
        message: `${endpoint} refused the request: ${err.details}`,
        hint: "the request is larger than the server's maxRequestBytes; send smaller values",
        endpoint,
        attempts,
        cause: err,
      });
    case grpc.status.CANCELLED:
      return new RaftKvClientError({
        code: "UNAVAILABLE",
        message: `call to ${endpoint} was cancelled: ${err.details}`,
        endpoint,
        attempts,
        cause: err,
      });
    default:
      return new RaftKvClientError({
        code: "INTERNAL",
        message: `${endpoint} failed the call with gRPC status ${grpc.status[err.code] ?? err.code}: ${err.details}`,
        hint: "check the node's log (raftkv.log in its data folder)",
        endpoint,
        attempts,
        cause: err,
      });
  }
}

/** grpc-js's words for a failed connection ("No connection established. Last error: Error: connect
 *  ECONNREFUSED 127.0.0.1:1. Resolution note: ") made short and plain. */
export function unreachableWhy(details: string): string {
  const d = details ?? "";
  if (/ECONNREFUSED/.test(d)) return "connection refused (nothing listens there)";
  if (/ENOTFOUND|EAI_AGAIN|Name resolution failed|DNS resolution failed/i.test(d))
    return "host name not found";
  if (/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|timed out/i.test(d)) return "no route or no answer (timed out)";
  if (/ECONNRESET|EPIPE|socket hang up|Connection dropped/i.test(d)) return "connection closed by the node";
  if (/SSL|TLS|certificate|handshake|Failed to connect/i.test(d))
    return "TLS handshake failed (wrong or missing certificate? the node's log says why)";
  return "no connection";
}
