// `raftkv serve`: one node from flags and/or a JSON config file, until SIGTERM/SIGINT.

import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { RaftKvError } from "../lib/errors.ts";
import { configError, parseAddress, parsePeers, resolveServerConfig } from "../server/config.ts";
import { EXIT, exitCodeOf, printError } from "./output.ts";
import { quietIpServernameWarning } from "./tls-warning.ts";

interface ServeFlags {
  config?: string;
  id?: string;
  nodeId?: string;
  listen?: string;
  nodeIp?: string;
  nodePort?: string;
  peers?: string;
  dataDir?: string;
  clusterId?: string;
  metricsPort?: string;
  metricsHost?: string;
  logLevel?: string;
  tickMs?: string;
  heartbeatMs?: string;
  electionTimeoutMinMs?: string;
  electionTimeoutMaxMs?: string;
  leaseMs?: string;
  driftBound?: string;
  snapshotEveryEntries?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientAuth?: string;
  insecureListen?: boolean;
  join?: boolean;
  set: string[];
  stopOnStdinClose: boolean;
  ui: boolean;
  etcdApi: boolean;
  uiMembers?: string;
}

/** Flags that map one-to-one onto a config setting. */
const DIRECT: readonly (keyof ServeFlags & string)[] = [
  "dataDir",
  "clusterId",
  "metricsPort",
  "metricsHost",
  "logLevel",
  "tickMs",
  "heartbeatMs",
  "electionTimeoutMinMs",
  "electionTimeoutMaxMs",
  "leaseMs",
  "driftBound",
  "snapshotEveryEntries",
];

export function addServeCommand(program: Command): void {
  program
    .command("serve")
    .description("run one node of a cluster")
    .option("--config <file>", "JSON file with any settings (flags override it)")
    .option("--id <n>", "this node's id (a member of --peers)")
    .option("--node-id <n>", "same as --id")
    .option(
      "--listen <host:port>",
      "address to bind for peers and clients (default: this node's --peers address)",
    )
    .option("--node-ip <ip>", "host part of --listen")
    .option("--node-port <port>", "port part of --listen")
    .option("--peers <list>", "every member as id=host:port, comma-separated, this node included")
    .option("--data-dir <dir>", "this node's data folder (WAL, snapshots, raftkv.log)")
    .option(
      "--cluster-id <id>",
      "cluster name; peers and data folders of another cluster are refused (default raftkv)",
    )
    .option("--metrics-port <port>", "serve Prometheus metrics at http://host:port/metrics")
    .option("--metrics-host <host>", "host for the metrics endpoint (default: the listen host)")
    .option("--log-level <level>", "trace | debug | info | warn | error")
    .option("--tick-ms <ms>", "tick length (default 10)")
    .option("--heartbeat-ms <ms>", "leader heartbeat interval (default 100)")
    .option("--election-timeout-min-ms <ms>", "election timeout lower bound (default 1000)")
    .option("--election-timeout-max-ms <ms>", "election timeout upper bound (default 2000)")
    .option("--lease-ms <ms>", "leader lease (default: the largest safe one)")
    .option("--drift-bound <ratio>", "max clock-rate ratio between nodes (default 1.1)")
    .option("--snapshot-every-entries <n>", "snapshot after this many applied entries (default 10000)")
    .option("--tls-ca <file>", "TLS: PEM of the CA that signs every node and client certificate")
    .option("--tls-cert <file>", "TLS: this node's certificate (PEM), naming its --peers host")
    .option("--tls-key <file>", "TLS: this node's private key (PEM)")
    .option(
      "--tls-client-auth <mode>",
      "TLS: none | optional | required: must clients present a certificate? (default required; peers always must)",
    )
    .option(
      "--insecure-listen",
      "without TLS, listen on a non-loopback address anyway: traffic is unauthenticated, anyone who reaches the port can disrupt the cluster",
    )
    .option(
      "--join",
      "join an existing cluster: with an empty data folder, wait to be added (raftkv member add) instead of bootstrapping one from --peers",
    )
    .option(
      "--set <name=value>",
      "any other setting, repeatable (e.g. --set maxValueBytes=65536)",
      collect,
      [],
    )
    .option("--stop-on-stdin-close", "stop when stdin closes (used by `raftkv local`)", false)
    .option("--no-ui", "serve no dashboard at /ui on the metrics port")
    .option("--no-etcd-api", "serve only raftkv.v1 on the client port, not etcd's v3 API")
    .option(
      "--ui-members <list>",
      "every member's dashboard as id=http://host:metrics-port, comma-separated: the page then shows each member's own state",
    )
    .action(async (f: ServeFlags) => {
      await serve(f);
    });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

/** Config file, then flags over it; the node's own address from --listen or --node-ip/--node-port. */
export function rawConfigFrom(f: ServeFlags): Record<string, unknown> {
  let raw: Record<string, unknown> = {};
  if (f.config !== undefined) raw = readConfigFile(f.config);
  const id = f.id ?? f.nodeId;
  if (f.id !== undefined && f.nodeId !== undefined && f.id !== f.nodeId)
    throw configError("id", `--id ${f.id} and --node-id ${f.nodeId} disagree`);
  if (id !== undefined) raw["id"] = id;
  if (f.peers !== undefined) raw["peers"] = f.peers;
  for (const k of DIRECT) {
    const v = f[k];
    if (typeof v === "string") raw[k] = v;
  }
  const tlsFlags = {
    tlsCaFile: f.tlsCa,
    tlsCertFile: f.tlsCert,
    tlsKeyFile: f.tlsKey,
    tlsClientAuth: f.tlsClientAuth,
  };
  for (const [k, v] of Object.entries(tlsFlags)) if (v !== undefined) raw[k] = v;
  if (raw["tlsCaFile"] !== undefined) quietIpServernameWarning();
  if (f.insecureListen === true) raw["insecureListen"] = true;
  if (f.join === true) raw["join"] = true;
  for (const s of f.set) {
    const eq = s.indexOf("=");
    if (eq <= 0) throw configError("--set", `expected name=value, got "${s}"`);
    raw[s.slice(0, eq)] = s.slice(eq + 1);
  }
  if (f.listen !== undefined) {
    if (f.nodeIp !== undefined || f.nodePort !== undefined)
      throw configError("listen", "give either --listen or --node-ip/--node-port, not both");
    raw["listen"] = f.listen;
  } else if (f.nodeIp !== undefined || f.nodePort !== undefined) {
    raw["listen"] = listenFromParts(raw, f.nodeIp, f.nodePort);
  }
  return raw;
}

function listenFromParts(
  raw: Record<string, unknown>,
  ip: string | undefined,
  port: string | undefined,
): string {
  let own: [string, number] | null = null;
  if (raw["peers"] !== undefined && raw["id"] !== undefined) {
    const addr = parsePeers(raw["peers"]).get(Number(raw["id"]));
    if (addr !== undefined) own = parseAddress("peers", addr);
  }
  const host = ip ?? own?.[0];
  const p = port ?? (own === null ? undefined : String(own[1]));
  if (host === undefined || p === undefined)
    throw configError(
      "listen",
      "--node-ip and --node-port are both needed when --peers does not list this node",
    );
  const listen = `${host}:${p}`;
  parseAddress("listen", listen);
  // The report's spelling may leave this node out of --peers: add it under the address it listens on.
  if (own === null && raw["id"] !== undefined) {
    const peers = raw["peers"] === undefined ? new Map<number, string>() : parsePeers(raw["peers"]);
    peers.set(Number(raw["id"]), listen);
    raw["peers"] = Object.fromEntries(peers);
  }
  return listen;
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new RaftKvError({
      code: "CONFIG",
      message: `cannot read config file ${path}: ${(err as Error).message}`,
      hint: "check the --config path",
    });
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RaftKvError({
      code: "CONFIG",
      message: `config file ${path} is not valid JSON: ${(err as Error).message}`,
      hint: "fix the file (it is one JSON object of settings)",
    });
  }
  if (typeof v !== "object" || v === null || Array.isArray(v))
    throw new RaftKvError({
      code: "CONFIG",
      message: `config file ${path} must hold one JSON object`,
      hint: 'e.g. {"id": 0, "peers": "0=127.0.0.1:60000", "dataDir": "data/node-0"}',
    });
  return { ...(v as Record<string, unknown>) };
}

async function serve(f: ServeFlags): Promise<void> {
  const config = resolveServerConfig(rawConfigFrom(f));
  // Loaded here, not at the top: the client commands start faster without the server's code.
  const { startNode } = await import("../server/node.ts");
  const dashboard = f.ui && config.metricsPort !== null ? await import("../ui/serve-dashboard.ts") : null;
  const { parseMembers } = await import("../ui/control-switch.ts");
  const members = parseMembers(f.uiMembers ?? "");
  const etcd = f.etcdApi ? await import("../etcd/etcd-node.ts") : null;
  const node = await startNode(config, {
    ...(dashboard === null ? {} : { operatorRoutes: dashboard.kvDashboard(config, members, process.env) }),
    ...(etcd === null
      ? {}
      : {
          services: (server, raft, context, mvcc) => etcd.addEtcdApi(server, raft, context, config, { mvcc }),
        }),
  });
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      node.logger.warn({ signal: sig }, "second signal: exiting at once");
      process.exit(EXIT.failed);
    }
    if (sig !== "SIGTERM") return void node.stop(`received ${sig}`);
    // A leader told to stop hands over first (issue 13), so clients see no election timeout.
    const bound = 2 * config.electionTimeoutMaxMs;
    void node.raft
      .handOverLeadership(bound)
      .then((to) => {
        if (to !== null) node.logger.info({ to }, `handed leadership to node ${to} before stopping`);
      })
      .catch((err: unknown) => node.logger.warn({ err }, "handing over leadership failed; stopping anyway"))
      .finally(() => void node.stop(`received ${sig}`));
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  if (f.stopOnStdinClose) {
    process.stdin.on("end", () => void node.stop("parent closed stdin"));
    process.stdin.on("error", () => void node.stop("parent closed stdin"));
    process.stdin.resume();
  }
  const code = await node.done;
  process.exit(code);
}

/** Start-up failures print one line and exit 2 for configuration problems, 1 otherwise. */
export function serveFailed(err: unknown): number {
  printError("serve", err);
  return exitCodeOf(err);
}
