// The live cluster dashboard a node serves at /ui on its operator port: the page (static files in
// src/ui/assets, no build step), one bounded event stream of this node's state (Status, the timeline of
// its events, request rates and latency percentiles from its /metrics histograms), the key browser, and
// on `raftkv local` only, leadership transfer for the fault buttons (local-control.ts does the rest).
// The page opens every member's stream, so it keeps showing the others when one node is down.

import { readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Registry } from "prom-client";
import type { Membership } from "../core/membership.ts";
import type { NodeId } from "../core/types.ts";
import { RaftKvError } from "../lib/errors.ts";
import type { WatchSource } from "../server/mvcc-watch-hub.ts";
import type { NodeView } from "../server/node-view.ts";
import type { NodeEvent } from "../server/observer.ts";
import type { OperatorRoute } from "../server/operator-http.ts";
import { type AccessPolicy, corsHeaders, originAccepted, refusal, WRITE_HEADER } from "./access.ts";
import { type SeriesSample, seriesByLabel, type WindowStats, windowStats } from "./histogram-window.ts";
import { deleteKey, errorReply, getKey, type KeyOps, listKeys, putKey, sendJson } from "./key-browser.ts";
import { KeyWatches, type KeyWatchLimits } from "./key-watch.ts";
import { SseHub } from "./sse-hub.ts";
import { Timeline } from "./timeline.ts";

/** The part of a Raft node (RaftNode, src/server/raft-node.ts) the dashboard reads. */
export interface DashboardNode {
  readonly id: NodeId;
  readonly registry: Registry;
  status(): NodeView;
  /** The configuration in effect here and the index of the entry that made it. */
  configuration(): { membership: Membership; index: number };
  on(type: NodeEvent["type"], listener: (e: NodeEvent) => void): () => void;
  transferLeadership(to: NodeId): boolean;
}

/** `raftkv local`'s fault controls (local-control.ts): where they are and the token they need. */
export interface ControlEndpoint {
  readonly url: string;
  readonly token: string;
}

export interface DashboardLimits {
  /** Event streams open at once; more pages get 503. */
  readonly maxClients: number;
  /** A stream whose socket holds more than this unsent skips frames. */
  readonly maxBufferedBytes: number;
  /** A frame every intervalMs (and at once on an election, a leader change, a lease or a snapshot). */
  readonly intervalMs: number;
  /** A stream blocked this long is closed. */
  readonly stallLimitMs: number;
  readonly timelineEntries: number;
  /** Request rates and percentiles are over the last windowSeconds (sampled each second). */
  readonly windowSeconds: number;
}

export const DEFAULT_DASHBOARD_LIMITS: DashboardLimits = {
  maxClients: 16,
  maxBufferedBytes: 256 * 1024,
  intervalMs: 200,
  stallLimitMs: 30_000,
  timelineEntries: 200,
  windowSeconds: 5,
};

export interface DashboardOptions {
  readonly node: DashboardNode;
  /** The key browser's operations; null: no key browser (a node of another state machine). */
  readonly keys: KeyOps | null;
  /** The MVCC state the key browser's live watch reads (key-watch.ts); null: no watch. */
  readonly watchSource: (() => WatchSource) | null;
  readonly watchLimits?: Partial<KeyWatchLimits>;
  readonly maxValueBytes: number;
  /** The leader lease's full length, for the page's timer bar. */
  readonly leaseMs: number;
  /** Every member's dashboard origin ("http://127.0.0.1:60100") by id, when known (`--ui-members`). */
  readonly members: ReadonlyMap<NodeId, string>;
  /** TLS configured on the node: the dashboard is then served over TLS to CA-signed client certificates. */
  readonly tls: boolean;
  /** Set by `raftkv local` only (control-switch.ts): the fault buttons. */
  readonly control: ControlEndpoint | null;
  readonly limits?: Partial<DashboardLimits>;
  /** Wall clock for the timeline (default Date.now). */
  readonly wallMs?: () => number;
  /** Monotonic clock (default performance.now). */
  readonly nowMs?: () => number;
}

const REQUEST_METRIC = "raftkv_request_duration_seconds";
const FSYNC_METRIC = "raftkv_wal_fsync_duration_seconds";
const CONTROL_HEADER = "x-raftkv-control";

const ASSETS: Readonly<Record<string, { file: string; type: string }>> = {
  "/ui/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/index.html": { file: "index.html", type: "text/html; charset=utf-8" },
  "/ui/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/ui/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

/** The folder of the page's files: src/ui/assets, from src/ui or from the compiled dist/src/ui. */
export function assetsDir(): string {
  const here = fileURLToPath(new URL(".", import.meta.url));
  return here.includes("/dist/src/ui") ? join(here, "../../../src/ui/assets") : join(here, "assets");
}

/** The page's files, read once. */
export function loadAssets(dir = assetsDir()): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const { file } of Object.values(ASSETS)) {
    if (out.has(file)) continue;
    try {
      out.set(file, readFileSync(join(dir, file)));
    } catch (err) {
      throw new RaftKvError({
        code: "CONFIG",
        message: `the dashboard's page is missing: cannot read ${join(dir, file)}: ${(err as Error).message}`,
        hint: "reinstall raftkv (the package ships src/ui/assets), or start the node with --no-ui",
      });
    }
  }
  return out;
}

/** The configuration as a frame carries it (at most MAX_MEMBERS ids in each list; addresses are in hello). */
export interface ConfigView {
  readonly index: number;
  readonly voters: readonly NodeId[];
  /** While joint: the outgoing configuration's voters; empty otherwise. */
  readonly outgoing: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly joint: boolean;
}

export function configView(c: { membership: Membership; index: number }): ConfigView {
  const { voters, outgoing, learners } = c.membership;
  return { index: c.index, voters, outgoing, learners, joint: outgoing.length > 0 };
}

interface Stats {
  readonly windowSeconds: number;
  readonly ops: Record<string, WindowStats>;
  readonly fsync: Record<string, WindowStats>;
}

interface Sample {
  readonly atMs: number;
  readonly ops: Map<string, SeriesSample>;
  readonly fsync: Map<string, SeriesSample>;
}

export class Dashboard implements OperatorRoute {
  private readonly limits: DashboardLimits;
  private readonly timeline: Timeline;
  private readonly hub: SseHub;
  private readonly policy: AccessPolicy;
  private readonly assets: Map<string, Buffer>;
  private readonly watches: KeyWatches | null;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly samples: Sample[] = [];
  private sampler: NodeJS.Timeout | null = null;
  private stats: Stats | null = null;
  private readonly wallMs: () => number;
  private readonly nowMs: () => number;

  constructor(private readonly o: DashboardOptions) {
    this.limits = { ...DEFAULT_DASHBOARD_LIMITS, ...o.limits };
    this.wallMs = o.wallMs ?? Date.now;
    this.nowMs = o.nowMs ?? (() => performance.now());
    this.assets = loadAssets();
    this.watches =
      o.watchSource === null ? null : new KeyWatches(o.watchSource, o.watchLimits ?? {}, this.nowMs);
    this.timeline = new Timeline(o.node.id, this.limits.timelineEntries, this.wallMs, o.node.status().role);
    const origins = [...o.members.values()];
    this.policy = {
      tls: o.tls,
      allowedOrigins: new Set([...origins, ...(o.control === null ? [] : [new URL(o.control.url).origin])]),
      allowedHosts: new Set(origins.map((u) => new URL(u).hostname)),
    };
    this.hub = new SseHub({
      maxClients: this.limits.maxClients,
      maxBufferedBytes: this.limits.maxBufferedBytes,
      intervalMs: this.limits.intervalMs,
      stallLimitMs: this.limits.stallLimitMs,
      nowMs: this.nowMs,
      build: () => JSON.stringify(this.state()),
      perClient: (shared, c) => {
        const t = JSON.stringify(this.timeline.since(c.cursor));
        c.cursor = this.timeline.lastSeq;
        return `{"s":${shared as string},"t":${t}}`;
      },
      hello: () => JSON.stringify(this.hello()),
    });
    for (const type of ["role", "leader", "lease", "snapshot"] as const)
      this.unsubscribe.push(
        o.node.on(type, (e) => {
          this.timeline.record(e);
          this.hub.poke();
        }),
      );
  }

  /** What every stream starts with: who this node is, the members, what the page may offer. */
  hello(): unknown {
    const v = this.o.node.status();
    return {
      node: v.id,
      clusterId: v.clusterId,
      version: v.version,
      members: [...v.peers.map((p) => p.id), v.id]
        .sort((a, b) => a - b)
        .map((id) => ({
          id,
          address: id === v.id ? v.address : (v.peers.find((p) => p.id === id)?.address ?? ""),
          dashboard: this.o.members.get(id) ?? null,
        })),
      control: this.o.control,
      keys: this.o.keys !== null,
      watch: this.watches !== null,
      tls: this.o.tls,
      leaseMs: this.o.leaseMs,
      maxValueBytes: this.o.maxValueBytes,
      intervalMs: this.limits.intervalMs,
    };
  }

  /** This node's state now, as each frame carries it. */
  state(): unknown {
    return {
      node: this.o.node.id,
      atMs: this.wallMs(),
      view: this.o.node.status(),
      config: configView(this.o.node.configuration()),
      leaseMs: this.o.leaseMs,
      lastLeaderChangeAtMs: this.timeline.lastLeaderChangeAtMs,
      stats: this.stats,
      clients: this.hub.size,
      watches: this.watches?.size ?? 0,
    };
  }

  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = new URL(req.url ?? "/", "http://x");
    const path = url.pathname;
    if (path !== "/ui" && !path.startsWith("/ui/")) return false;
    const refused = refusal(req, this.policy);
    if (refused !== null) {
      res.writeHead(refused.status, { "content-type": "text/plain; charset=utf-8" });
      res.end(`${refused.message}\n`);
      return true;
    }
    const cors = corsHeaders(req, this.policy);
    if (req.method === "OPTIONS") {
      res.writeHead(Object.keys(cors).length > 0 ? 204 : 403, cors);
      res.end();
      return true;
    }
    if (req.method !== "GET" && req.method !== "HEAD" && !this.mayChange(req, path)) {
      sendJson(
        res,
        403,
        {
          code: "FORBIDDEN",
          error: `state-changing dashboard calls need the ${path === "/ui/api/transfer" ? CONTROL_HEADER : WRITE_HEADER} header from the dashboard page`,
        },
        cors,
      );
      return true;
    }
    this.route(req, res, path, url.searchParams, cors);
    return true;
  }

  /** Custom headers a foreign page cannot send without a preflight, which is refused (access.ts). */
  private mayChange(req: IncomingMessage, path: string): boolean {
    const header =
      path === "/ui/api/transfer"
        ? req.headers[CONTROL_HEADER] !== undefined
        : req.headers[WRITE_HEADER] === "1";
    return header && originAccepted(req, this.policy);
  }

  private route(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    q: URLSearchParams,
    cors: Record<string, string>,
  ): void {
    const method = req.method ?? "GET";
    if (path === "/ui") {
      res.writeHead(302, { location: "/ui/" });
      res.end();
      return;
    }
    const asset = ASSETS[path];
    if (asset !== undefined && method === "GET") {
      res.writeHead(200, {
        "content-type": asset.type,
        "cache-control": "no-cache",
        "x-content-type-options": "nosniff",
      });
      res.end(this.assets.get(asset.file));
      return;
    }
    switch (`${method} ${path}`) {
      case "GET /ui/api/events":
        this.startSampling();
        if (!this.hub.attach(req, res, cors))
          sendJson(
            res,
            503,
            {
              code: "OVERLOADED",
              error: `too many dashboard streams on node ${this.o.node.id} (max ${this.limits.maxClients}); close a tab`,
            },
            cors,
          );
        return;
      case "GET /ui/api/state":
        sendJson(
          res,
          200,
          { hello: this.hello(), state: this.state(), timeline: this.timeline.since(0) },
          cors,
        );
        return;
      case "GET /ui/api/watch":
        if (this.watches === null)
          sendJson(res, 404, { code: "NOT_FOUND", error: "this node has no key watch" }, cors);
        else this.watches.open(req, res, q, cors);
        return;
      case "POST /ui/api/transfer":
        this.transfer(req, res, q, cors);
        return;
      case "GET /ui/api/keys":
      case "GET /ui/api/key":
      case "PUT /ui/api/key":
      case "DELETE /ui/api/key":
        this.keys(req, res, `${method} ${path}`, q, cors);
        return;
      default:
        sendJson(
          res,
          404,
          { code: "NOT_FOUND", error: `no ${method} ${path}: the dashboard is at /ui/` },
          cors,
        );
    }
  }

  private keys(
    req: IncomingMessage,
    res: ServerResponse,
    what: string,
    q: URLSearchParams,
    cors: Record<string, string>,
  ): void {
    const ops = this.o.keys;
    if (ops === null) {
      sendJson(res, 404, { code: "NOT_FOUND", error: "this node's state machine has no key browser" }, cors);
      return;
    }
    const call =
      what === "GET /ui/api/keys"
        ? () => listKeys(ops, q)
        : what === "GET /ui/api/key"
          ? () => getKey(ops, q)
          : what === "PUT /ui/api/key"
            ? () => putKey(ops, q, req, this.o.maxValueBytes)
            : () => deleteKey(ops, q);
    call().then(
      (body) => sendJson(res, 200, body, cors),
      (err: unknown) => {
        const { status, body } = errorReply(err);
        sendJson(res, status, body, cors);
      },
    );
  }

  private transfer(
    req: IncomingMessage,
    res: ServerResponse,
    q: URLSearchParams,
    cors: Record<string, string>,
  ): void {
    const control = this.o.control;
    if (control === null || req.headers[CONTROL_HEADER] !== control.token) {
      sendJson(res, 403, { code: "FORBIDDEN", error: "fault controls are on `raftkv local` only" }, cors);
      return;
    }
    const to = Number(q.get("to"));
    const v = this.o.node.status();
    if (!Number.isSafeInteger(to) || !v.peers.some((p) => p.id === to)) {
      sendJson(
        res,
        400,
        { code: "INVALID_ARGUMENT", error: `to must be another member's id, got "${q.get("to")}"` },
        cors,
      );
      return;
    }
    const ok = this.o.node.transferLeadership(to);
    sendJson(
      res,
      ok ? 200 : 409,
      ok
        ? { ok, message: `node ${v.id} is handing leadership to node ${to}` }
        : {
            ok,
            code: "NOT_LEADER",
            error: `node ${v.id} cannot transfer now (it is ${v.role}; a transfer may be under way)`,
          },
      cors,
    );
  }

  private startSampling(): void {
    if (this.sampler !== null) return;
    void this.sample();
    this.sampler = setInterval(() => {
      if (this.hub.size === 0) {
        if (this.sampler !== null) clearInterval(this.sampler);
        this.sampler = null;
        this.samples.length = 0;
        return;
      }
      void this.sample();
    }, 1000);
    this.sampler.unref();
  }

  private async sample(): Promise<void> {
    const read = async (name: string, label: string): Promise<Map<string, SeriesSample>> => {
      const m = this.o.node.registry.getSingleMetric(name);
      if (m === undefined) return new Map();
      const got = (await m.get()) as { values: Parameters<typeof seriesByLabel>[1] };
      return seriesByLabel(name, got.values, label);
    };
    const s: Sample = {
      atMs: this.nowMs(),
      ops: await read(REQUEST_METRIC, "op"),
      fsync: await read(FSYNC_METRIC, "op"),
    };
    this.samples.push(s);
    while (this.samples.length > this.limits.windowSeconds + 1) this.samples.shift();
    const old = this.samples[0]!;
    const seconds = (s.atMs - old.atMs) / 1000;
    const over = (
      olderMap: Map<string, SeriesSample>,
      newerMap: Map<string, SeriesSample>,
    ): Record<string, WindowStats> => {
      const out: Record<string, WindowStats> = {};
      for (const [k, n] of newerMap)
        out[k] = windowStats(old === s ? null : (olderMap.get(k) ?? null), n, old === s ? 0 : seconds);
      return out;
    };
    this.stats = { windowSeconds: seconds, ops: over(old.ops, s.ops), fsync: over(old.fsync, s.fsync) };
  }

  close(): void {
    for (const u of this.unsubscribe) u();
    if (this.sampler !== null) clearInterval(this.sampler);
    this.watches?.close();
    this.hub.close();
  }
}
