// `raftkv local`'s fault controls for the dashboard: a small HTTP server on 127.0.0.1 (in the `raftkv
// local` process, so it outlives the nodes it kills) that kills, restarts, pauses (SIGSTOP) and resumes
// (SIGCONT) nodes and cuts and heals links. Every call needs the token the nodes' pages carry (set by
// control-switch.ts), and cross-origin calls are answered only for the nodes' dashboard origins.

import { randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isLoopbackAddress } from "./access.ts";

export interface LocalNodeState {
  readonly id: number;
  readonly running: boolean;
  readonly paused: boolean;
  readonly pid: number | null;
}

/** What `raftkv local` does for each button; each returns a sentence saying what it did. */
export interface LocalControlHooks {
  state(): {
    readonly nodes: readonly LocalNodeState[];
    readonly cuts: readonly (readonly [number, number])[];
  };
  kill(id: number): string;
  restart(id: number): string;
  pause(id: number): string;
  resume(id: number): string;
  cut(a: number, b: number): string;
  heal(a: number, b: number): string;
}

export class LocalControlError extends Error {}

export interface LocalControl {
  readonly url: string;
  readonly token: string;
  close(): Promise<void>;
}

const HEADER = "x-raftkv-control";

export async function startLocalControl(
  hooks: LocalControlHooks,
  allowedOrigins: () => ReadonlySet<string>,
  port = 0,
): Promise<LocalControl> {
  const token = randomBytes(18).toString("base64url");
  const server: Server = createServer((req, res) => answer(req, res, hooks, token, allowedOrigins()));
  const bound = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      const a = server.address();
      resolve(typeof a === "object" && a !== null ? a.port : port);
    });
  });
  return {
    url: `http://127.0.0.1:${bound}`,
    token,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function answer(
  req: IncomingMessage,
  res: ServerResponse,
  hooks: LocalControlHooks,
  token: string,
  origins: ReadonlySet<string>,
): void {
  const origin = req.headers.origin;
  const cors: Record<string, string> =
    origin !== undefined && origins.has(origin)
      ? {
          "access-control-allow-origin": origin,
          "access-control-allow-methods": "GET, POST",
          "access-control-allow-headers": HEADER,
          vary: "Origin",
        }
      : {};
  const reply = (status: number, body: unknown): void => {
    res.writeHead(status, { ...cors, "content-type": "application/json", "cache-control": "no-store" });
    res.end(`${JSON.stringify(body)}\n`);
  };
  if (!isLoopbackAddress(req.socket.remoteAddress)) return reply(403, { error: "loopback only" });
  if (req.method === "OPTIONS") {
    res.writeHead(Object.keys(cors).length > 0 ? 204 : 403, cors);
    res.end();
    return;
  }
  if (req.headers[HEADER] !== token)
    return reply(403, { error: `the fault controls need the ${HEADER} token the dashboard page carries` });
  const url = new URL(req.url ?? "/", "http://x");
  const id = (name: string): number => {
    const v = Number(url.searchParams.get(name));
    if (!Number.isSafeInteger(v) || !hooks.state().nodes.some((n) => n.id === v))
      throw new LocalControlError(`${name} must be a node id, got "${url.searchParams.get(name)}"`);
    return v;
  };
  try {
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case "GET /control/state":
        return reply(200, hooks.state());
      case "POST /control/kill":
        return reply(200, { ok: true, message: hooks.kill(id("node")) });
      case "POST /control/restart":
        return reply(200, { ok: true, message: hooks.restart(id("node")) });
      case "POST /control/pause":
        return reply(200, { ok: true, message: hooks.pause(id("node")) });
      case "POST /control/resume":
        return reply(200, { ok: true, message: hooks.resume(id("node")) });
      case "POST /control/cut":
      case "POST /control/heal": {
        const [a, b] = [id("a"), id("b")];
        if (a === b) throw new LocalControlError("a link joins two different nodes");
        const [lo, hi] = a < b ? [a, b] : [b, a];
        return reply(200, {
          ok: true,
          message: route.endsWith("cut") ? hooks.cut(lo, hi) : hooks.heal(lo, hi),
        });
      }
      default:
        return reply(404, { error: `no ${route}: try POST /control/kill?node=N` });
    }
  } catch (err) {
    if (err instanceof LocalControlError) return reply(400, { ok: false, error: err.message });
    throw err;
  }
}
