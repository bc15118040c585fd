// The Raft core's public surface: the state machine, its configuration and its vocabulary.

export type { CoreConfig } from "./config.ts";
export { defaultCoreConfig, maxSafeLeaseTicks, validateCoreConfig } from "./config.ts";
export type { CoreBoot } from "./raft.ts";
export { Raft } from "./raft.ts";
export type * from "./types.ts";
