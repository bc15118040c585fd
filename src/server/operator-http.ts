// The operator endpoints on the metrics port: GET /metrics (Prometheus), /health and /ready (200 or 503
// with a JSON body saying why, see health.ts), /healthz (200 while the process answers at all).

import { createServer, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { checkHealth, checkReady, type HealthSources } from "./health.ts";

export interface OperatorServer {
  readonly server: Server;
  readonly port: number;
}

function json(res: ServerResponse, ok: boolean, body: unknown): void {
  res.writeHead(ok ? 200 : 503, { "content-type": "application/json" });
  res.end(`${JSON.stringify(body)}\n`);
}

function failed(res: ServerResponse, what: string, err: unknown): void {
  res.writeHead(500, { "content-type": "text/plain" });
  res.end(`${what} failed: ${err instanceof Error ? err.message : String(err)}\n`);
}

/** Serves the endpoints on host:port; resolves with the bound port. */
export async function startOperatorServer(
  registry: Registry,
  health: HealthSources,
  host: string,
  port: number,
): Promise<OperatorServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET") {
      res.writeHead(405, { "content-type": "text/plain", allow: "GET" });
      res.end("only GET\n");
      return;
    }
    switch (path) {
      case "/metrics":
        registry.metrics().then(
          (text) => {
            res.writeHead(200, { "content-type": registry.contentType });
            res.end(text);
          },
          (err: unknown) => failed(res, "metrics", err),
        );
        return;
      case "/health":
        checkHealth(health).then(
          (r) => json(res, r.health, r),
          (err: unknown) => failed(res, "health", err),
        );
        return;
      case "/ready": {
        const r = checkReady(health);
        json(res, r.ready, r);
        return;
      }
      case "/healthz":
        res.writeHead(200, { "content-type": "text/plain" });
        res.end("ok\n");
        return;
      default:
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("not found: try /metrics, /health or /ready\n");
    }
  });
  const bound = await new Promise<number>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const addr = server.address();
      resolve(typeof addr === "object" && addr !== null ? addr.port : port);
    });
  });
  return { server, port: bound };
}
