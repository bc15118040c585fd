// Tells whether a TCP connection accepted on loopback was dialed by this very process (Linux /proc).
//
// Why: a server's redirect names the leader by the address in its own --peers list, which for the chaos
// harness is a link proxy. The harness's clients live outside the simulated network (as Jepsen's do), so a
// proxy lets their connections through untouched and faults only the node-to-node traffic. Peer
// connections come from the node processes, client connections from the harness: the owner of the
// dialing socket tells them apart.

import { readdirSync, readFileSync, readlinkSync } from "node:fs";

const TCP_TABLES = ["/proc/net/tcp", "/proc/net/tcp6"] as const;
/** Bounds the scan of /proc/self/fd (a process with more descriptors is not one we expect). */
const MAX_FDS_SCANNED = 65_536;

/**
 * True when the socket connected from local port `dialerPort` to local port `listenPort` belongs to this
 * process. False when it belongs to another process, or when /proc cannot say (not Linux): then the
 * connection is treated as peer traffic.
 */
export function dialedByThisProcess(dialerPort: number, listenPort: number): boolean {
  const inodes = dialerInodes(dialerPort, listenPort);
  if (inodes.size === 0) return false;
  let fds: string[];
  try {
    fds = readdirSync("/proc/self/fd");
  } catch {
    return false;
  }
  for (const fd of fds.slice(0, MAX_FDS_SCANNED)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m !== null && inodes.has(m[1]!)) return true;
  }
  return false;
}

/** Inodes of the sockets whose local port is `dialerPort` and remote port `listenPort`. */
function dialerInodes(dialerPort: number, listenPort: number): Set<string> {
  const out = new Set<string>();
  for (const table of TCP_TABLES) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    const lines = text.split("\n");
    for (let i = 1; i < lines.length; i++) {
      const f = (lines[i] ?? "").trim().split(/\s+/);
      if (f.length < 10) continue;
      if (portOf(f[1]) === dialerPort && portOf(f[2]) === listenPort && f[9] !== "0") out.add(f[9]!);
    }
  }
  return out;
}

/** The port of a /proc/net/tcp address ("0100007F:1F90": address, then the port in hex). */
function portOf(field: string | undefined): number {
  if (field === undefined) return -1;
  const colon = field.lastIndexOf(":");
  return colon < 0 ? -1 : Number.parseInt(field.slice(colon + 1), 16);
}
