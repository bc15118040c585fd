// Backpressure for server streams: wait until what is queued for the client went out, so that a slow
// reader holds a stream back instead of growing its buffer.

import type * as grpc from "@grpc/grpc-js";

/** Resolves once the call's queued messages were taken by the client, or the call ended. */
export function waitForDrain(call: grpc.ServerWritableStream<unknown, unknown>): Promise<void> {
  if (!call.writableNeedDrain || call.cancelled) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      call.off("drain", done);
      call.off("close", done);
      resolve();
    };
    call.once("drain", done);
    call.once("close", done);
  });
}
