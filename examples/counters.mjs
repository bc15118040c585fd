#!/usr/bin/env node
// A replicated counter service on raftkv/node: a state machine of its own (named counters), replicated
// by Raft on raftkv's WAL and gRPC transport, with a small HTTP API. Plain JavaScript, plain node.
//
// Three nodes on one machine (each in its own terminal, from a project where raftkv is installed):
//   PEERS=0=127.0.0.1:7000,1=127.0.0.1:7001,2=127.0.0.1:7002
//   node counters.mjs --id 0 --peers $PEERS --data-dir data/counters-0 --http 127.0.0.1:8000
//   node counters.mjs --id 1 --peers $PEERS --data-dir data/counters-1 --http 127.0.0.1:8001
//   node counters.mjs --id 2 --peers $PEERS --data-dir data/counters-2 --http 127.0.0.1:8002
// Then:
//   curl -X POST 'http://127.0.0.1:8000/counters/visits?add=1'  # on the leader: {"name":"visits","value":1,...}
//   curl http://127.0.0.1:8000/counters/visits                  # a linearizable read on the leader
//   curl 'http://127.0.0.1:8001/counters/visits?consistency=stale'  # any node's own state
//   curl http://127.0.0.1:8001/status                            # any node: role, leader, indexes
// A follower answers writes and reads with 421 and the leader's id.

import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { resolveNodeConfig, startRaftNode } from "raftkv/node";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Named counters. Commands are JSON {"name", "add"}; apply returns the counter's new value. */
class Counters {
  /** @type {Map<string, number>} */
  counts = new Map();

  apply(command, _index) {
    let cmd;
    try {
      cmd = JSON.parse(decoder.decode(command));
    } catch {
      return { error: "not JSON" }; // the same on every node: never throw for bad bytes
    }
    if (typeof cmd?.name !== "string" || !Number.isSafeInteger(cmd.add)) return { error: "bad command" };
    const value = (this.counts.get(cmd.name) ?? 0) + cmd.add;
    this.counts.set(cmd.name, value);
    return { value };
  }

  get(name) {
    return this.counts.get(name) ?? 0;
  }

  // The whole state as one JSON chunk, built now: later applies do not change it.
  snapshot() {
    const image = encoder.encode(JSON.stringify([...this.counts]));
    let done = false;
    return {
      sizeBytes: image.length,
      next: () => {
        if (done) return null;
        done = true;
        return image;
      },
      close: () => {},
    };
  }

  // Build the new state in finish() (throwing if the image is bad), switch to it in commit().
  restore(_info) {
    const chunks = [];
    let next = null;
    return {
      push: (chunk) => chunks.push(chunk),
      finish: () => {
        const entries = JSON.parse(decoder.decode(Buffer.concat(chunks)));
        if (!Array.isArray(entries)) throw new Error("not a counters image"); // a bad image: asked for again
        next = new Map(entries);
      },
      commit: () => {
        this.counts = next;
      },
      abort: () => {},
    };
  }
}

const { values: args } = parseArgs({
  options: {
    id: { type: "string" },
    peers: { type: "string" },
    "data-dir": { type: "string" },
    http: { type: "string", default: "127.0.0.1:8000" },
    "snapshot-every": { type: "string", default: "10000" },
  },
});

const node = await startRaftNode({
  config: resolveNodeConfig({
    id: Number(args.id),
    peers: args.peers ?? "",
    dataDir: args["data-dir"] ?? `data/counters-${args.id}`,
    clusterId: "counters",
    snapshotEveryEntries: Number(args["snapshot-every"]),
    keepEntriesAfterSnapshot: 10,
    logLevel: "warn",
  }),
  stateMachine: new Counters(),
  maxCommandBytes: 4096,
});
node.on("leader", (e) => node.logger.warn(`leader is now ${e.leaderId ?? "unknown"} (term ${e.term})`));
// Snapshot events: ones this node took, and ones installed from the leader (it had fallen behind).
const snapshots = { taken: 0, installed: 0 };
node.on("snapshot", (e) => snapshots[e.source]++);

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}

function failed(res, err) {
  const code = err?.code ?? "INTERNAL";
  const status = code === "NOT_LEADER" || code === "NO_LEADER" ? 421 : code === "OVERLOADED" ? 503 : 500;
  reply(res, status, { error: code, message: String(err?.message ?? err), leaderId: err?.leaderId ?? null });
}

const [httpHost, httpPort] = args.http.split(":");
const http = createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  const name = /^\/counters\/([^/]+)$/.exec(url.pathname)?.[1];
  try {
    if (req.method === "GET" && url.pathname === "/status") {
      const { id, role, term, leaderId, appliedIndex, snapshotIndex } = node.status();
      return reply(res, 200, { id, role, term, leaderId, appliedIndex, snapshotIndex, snapshots });
    }
    if (name !== undefined && req.method === "POST") {
      const add = Number(url.searchParams.get("add") ?? "1");
      const { index, result } = await node.propose(encoder.encode(JSON.stringify({ name, add })));
      return result.error === undefined
        ? reply(res, 200, { name, value: result.value, index })
        : reply(res, 400, { error: result.error, index });
    }
    if (name !== undefined && req.method === "GET") {
      // ?consistency=stale reads this node's state as it is (any node); the default is linearizable.
      const consistency = url.searchParams.get("consistency") === "stale" ? "stale" : "lease";
      const value = await node.read((counters) => counters.get(name), { consistency });
      return reply(res, 200, { name, value });
    }
    reply(res, 404, { error: "try POST /counters/NAME?add=N, GET /counters/NAME or GET /status" });
  } catch (err) {
    failed(res, err);
  }
});
http.listen(Number(httpPort), httpHost, () => {
  const port = http.address().port;
  // One line on stdout once the node and its HTTP API are up (the package test waits for it).
  console.log(JSON.stringify({ node: node.id, raft: node.listenAddress, http: `${httpHost}:${port}` }));
});

for (const signal of ["SIGTERM", "SIGINT"])
  process.on(signal, async () => {
    http.close();
    await node.stop(`received ${signal}`);
    process.exit(0);
  });
const code = await node.done; // a fatal error stops the node by itself
process.exit(code);
