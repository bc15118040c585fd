// The fuzz targets by name.

import type { FuzzTarget, TargetName } from "../target.ts";
import { codecTarget } from "./codec.ts";
import { commandTarget } from "./command.ts";
import { historyTarget } from "./history.ts";
import { protoTarget } from "./proto.ts";
import { snapshotTarget } from "./snapshot.ts";
import { streamTarget } from "./stream.ts";
import { walTarget } from "./wal.ts";

export const TARGETS: Readonly<Record<TargetName, FuzzTarget>> = {
  codec: codecTarget,
  command: commandTarget,
  snapshot: snapshotTarget,
  wal: walTarget,
  history: historyTarget,
  proto: protoTarget,
  stream: streamTarget,
};
