// The node's structured log: pino to stderr and to raftkv.log in the data folder (the successor of dump.txt).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import pino from "pino";
import type { ServerSettings } from "./config.ts";
import { LogFile } from "./log-file.ts";

export type Logger = pino.Logger;

export const LOG_FILE_NAME = "raftkv.log";

export interface NodeLog {
  readonly logger: Logger;
  readonly file: string;
  /** Flush what is buffered (call before exit). */
  flush(): void;
}

export interface NodeLogOptions {
  readonly nodeId: number;
  readonly dataDir: string;
  readonly level: ServerSettings["logLevel"];
  /** Also write to stderr (default true). */
  readonly stderr?: boolean;
}

/** A logger whose every line carries the node id; the file is appended to across restarts. */
export function createNodeLog(o: NodeLogOptions): NodeLog {
  mkdirSync(o.dataDir, { recursive: true });
  const file = join(o.dataDir, LOG_FILE_NAME);
  let logger: pino.Logger | null = null;
  const fileStream = new LogFile(file, {
    onFailure: (err) => {
      const line = `cannot write the log file ${file} any more (${err.message}); logging to stderr only`;
      if (logger !== null) logger.error({ err }, line);
      else process.stderr.write(`${line}\n`);
    },
  });
  const streams: pino.StreamEntry[] = [{ level: o.level, stream: fileStream }];
  const errStream = o.stderr === false ? null : pino.destination({ dest: 2, sync: true });
  if (errStream !== null) streams.push({ level: o.level, stream: errStream });
  logger = pino(
    { level: o.level, base: { node: o.nodeId }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.multistream(streams),
  );
  return {
    logger,
    file,
    // One synchronous write of what is queued; a full disk makes it fail at once, never wait.
    flush: () => fileStream.flushSync(),
  };
}
