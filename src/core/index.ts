/**
 * raftkv/core: Raft as a pure, synchronous, deterministic state machine. Feed it tick(), step(message),
 * propose(bytes) and readIndex(id); after each input process its ready() in order (persist the hard
 * state and entries, syncing when `mustSync`; then send the messages; then apply the committed entries)
 * and call advance(). No I/O, timers, clock or randomness of its own.
 *
 * @packageDocumentation
 * @module raftkv/core
 */

export type { CoreConfig } from "./config.ts";
export { defaultCoreConfig, maxSafeLeaseTicks, validateCoreConfig } from "./config.ts";
export type { CoreBoot } from "./raft.ts";
export { Raft } from "./raft.ts";
export type * from "./types.ts";
