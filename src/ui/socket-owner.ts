// Which of `raftkv local`'s nodes dialed a loopback connection: the link proxies need it to cut one
// link (a-b) when every node dials node b at the same address (the configuration in the log names one
// address per member). Linux only: the dialing socket is found in /proc/net/tcp by its port, and its
// inode among the children's open files. Elsewhere, or for a process that is not a node (a client), the
// answer is null and the connection is never cut.

import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/** The inode of the socket bound to 127.0.0.1:localPort and connected to port remotePort, or null. */
export function socketInode(
  localPort: number,
  remotePort: number,
  tables = ["/proc/net/tcp", "/proc/net/tcp6"],
): string | null {
  const local = `:${localPort.toString(16).toUpperCase().padStart(4, "0")}`;
  const remote = `:${remotePort.toString(16).toUpperCase().padStart(4, "0")}`;
  for (const table of tables) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length > 9 && f[1]!.endsWith(local) && f[2]!.endsWith(remote)) return f[9]!;
    }
  }
  return null;
}

/** The id of the process (by pid) holding socket `inode`, or null. */
export function ownerOf(inode: string, pids: ReadonlyMap<number, number>): number | null {
  const want = `socket:[${inode}]`;
  for (const [pid, id] of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) return id;
      } catch {
        // closed meanwhile
      }
    }
  }
  return null;
}
