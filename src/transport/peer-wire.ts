// The wire shapes of the peer messages (proto/raftkv/v1/peer.proto), for the codec's wire-type check
// before decoding (src/lib/proto-wire.ts): a field sent with the wrong wire type is refused, not read as 0.

import type { MessageShape } from "../lib/proto-wire.ts";
import type { UnaryKind } from "./codec.ts";

const VARINT = 0;
const LEN = 2;
const I32 = 5;

const HEADER: MessageShape = {
  name: "PeerHeader",
  fields: {
    1: { name: "cluster_id", wire: LEN },
    2: { name: "from", wire: VARINT },
    3: { name: "to", wire: VARINT },
    4: { name: "term", wire: VARINT },
    5: { name: "from_incarnation", wire: LEN },
    6: { name: "to_incarnation", wire: LEN },
  },
};
const header = { name: "header", wire: LEN, message: HEADER } as const;

const ENTRY: MessageShape = {
  name: "Entry",
  fields: {
    1: { name: "index", wire: VARINT },
    2: { name: "term", wire: VARINT },
    3: { name: "kind", wire: VARINT },
    4: { name: "data", wire: LEN },
  },
};
const APPEND_ENTRIES_REQUEST: MessageShape = {
  name: "AppendEntriesRequest",
  fields: {
    1: header,
    2: { name: "prev_log_index", wire: VARINT },
    3: { name: "prev_log_term", wire: VARINT },
    4: { name: "entries", wire: LEN, message: ENTRY },
    5: { name: "leader_commit", wire: VARINT },
    6: { name: "round", wire: VARINT },
  },
};
const APPEND_ENTRIES_RESPONSE: MessageShape = {
  name: "AppendEntriesResponse",
  fields: {
    1: header,
    2: { name: "success", wire: VARINT },
    3: { name: "match_index", wire: VARINT },
    4: { name: "conflict_term", wire: VARINT },
    5: { name: "conflict_index", wire: VARINT },
    6: { name: "round", wire: VARINT },
  },
};
const REQUEST_VOTE_REQUEST: MessageShape = {
  name: "RequestVoteRequest",
  fields: {
    1: header,
    2: { name: "pre_vote", wire: VARINT },
    3: { name: "last_log_index", wire: VARINT },
    4: { name: "last_log_term", wire: VARINT },
    5: { name: "transfer", wire: VARINT },
  },
};
const REQUEST_VOTE_RESPONSE: MessageShape = {
  name: "RequestVoteResponse",
  fields: {
    1: header,
    2: { name: "pre_vote", wire: VARINT },
    3: { name: "granted", wire: VARINT },
    4: { name: "lease_remaining_ticks", wire: VARINT },
  },
};
const SNAPSHOT_META: MessageShape = {
  name: "SnapshotMeta",
  fields: {
    1: { name: "index", wire: VARINT },
    2: { name: "term", wire: VARINT },
    3: { name: "size_bytes", wire: VARINT },
    4: { name: "crc32c", wire: I32 },
    5: { name: "membership", wire: LEN },
  },
};
const INSTALL_SNAPSHOT_REQUEST: MessageShape = {
  name: "InstallSnapshotRequest",
  fields: {
    1: header,
    2: { name: "meta", wire: LEN, message: SNAPSHOT_META },
    3: { name: "offset", wire: VARINT },
    4: { name: "data", wire: LEN },
    5: { name: "length", wire: VARINT },
    6: { name: "done", wire: VARINT },
    7: { name: "round", wire: VARINT },
  },
};
const INSTALL_SNAPSHOT_RESPONSE: MessageShape = {
  name: "InstallSnapshotResponse",
  fields: {
    1: header,
    2: { name: "snapshot_index", wire: VARINT },
    3: { name: "next_offset", wire: VARINT },
    4: { name: "installed", wire: VARINT },
    5: { name: "round", wire: VARINT },
  },
};
const TIMEOUT_NOW_REQUEST: MessageShape = { name: "TimeoutNowRequest", fields: { 1: header } };

export const PEER_MESSAGE: MessageShape = {
  name: "PeerMessage",
  fields: {
    1: { name: "append_entries", wire: LEN, message: APPEND_ENTRIES_REQUEST },
    2: { name: "append_entries_response", wire: LEN, message: APPEND_ENTRIES_RESPONSE },
    3: { name: "request_vote", wire: LEN, message: REQUEST_VOTE_REQUEST },
    4: { name: "request_vote_response", wire: LEN, message: REQUEST_VOTE_RESPONSE },
    5: { name: "install_snapshot", wire: LEN, message: INSTALL_SNAPSHOT_REQUEST },
    6: { name: "install_snapshot_response", wire: LEN, message: INSTALL_SNAPSHOT_RESPONSE },
    7: { name: "timeout_now", wire: LEN, message: TIMEOUT_NOW_REQUEST },
  },
};

/** Each PeerMessage is checked when it is decoded; the batch only for its own framing. */
export const PEER_BATCH: MessageShape = { name: "PeerBatch", fields: { 1: { name: "messages", wire: LEN } } };

export const UNARY_REQUEST_SHAPES: Readonly<Record<UnaryKind, MessageShape>> = {
  appendEntries: APPEND_ENTRIES_REQUEST,
  requestVote: REQUEST_VOTE_REQUEST,
  installSnapshot: INSTALL_SNAPSHOT_REQUEST,
  timeoutNow: TIMEOUT_NOW_REQUEST,
};

/** Every peer message shape, for the test that holds them to peer.proto. */
export const PEER_SHAPES: readonly MessageShape[] = [
  HEADER,
  ENTRY,
  APPEND_ENTRIES_REQUEST,
  APPEND_ENTRIES_RESPONSE,
  REQUEST_VOTE_REQUEST,
  REQUEST_VOTE_RESPONSE,
  SNAPSHOT_META,
  INSTALL_SNAPSHOT_REQUEST,
  INSTALL_SNAPSHOT_RESPONSE,
  TIMEOUT_NOW_REQUEST,
  PEER_MESSAGE,
  PEER_BATCH,
];
