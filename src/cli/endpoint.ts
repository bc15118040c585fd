// `raftkv endpoint health`: asks each endpoint (no redirects) for its status; an endpoint is healthy
// when it answers in time and knows a leader. Prints one line per endpoint with the time it took, and
// exits 1 when any endpoint is unhealthy, so scripts and probes can use it.

import type { Command } from "commander";
import type { RaftKvClient } from "../client/index.ts";
import { type ClientFlags, parseDuration, withClient, withClientOptions } from "./kv-commands.ts";
import { EXIT, printJson, usageError } from "./output.ts";

export interface EndpointHealth {
  readonly endpoint: string;
  readonly healthy: boolean;
  readonly tookMs: number;
  readonly nodeId: number | null;
  readonly leaderId: number | null;
  /** Why it is unhealthy ("" when healthy). */
  readonly reason: string;
}

/** Checks every endpoint at once, each within timeoutMs. */
export async function checkEndpoints(
  c: RaftKvClient,
  endpoints: readonly string[],
  timeoutMs: number,
): Promise<EndpointHealth[]> {
  return Promise.all(
    endpoints.map(async (endpoint): Promise<EndpointHealth> => {
      const started = performance.now();
      const took = (): number => Math.round(performance.now() - started);
      try {
        const s = await c.status(endpoint, { timeoutMs });
        const healthy = s.leaderId !== null;
        return {
          endpoint,
          healthy,
          tookMs: took(),
          nodeId: s.nodeId,
          leaderId: s.leaderId,
          reason: healthy ? "" : `node ${s.nodeId} knows no leader (term ${s.term})`,
        };
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        return { endpoint, healthy: false, tookMs: took(), nodeId: null, leaderId: null, reason };
      }
    }),
  );
}

export function healthLine(h: EndpointHealth): string {
  return h.healthy
    ? `${h.endpoint} is healthy: took ${h.tookMs} ms (node ${h.nodeId}, leader ${h.leaderId})`
    : `${h.endpoint} is unhealthy: took ${h.tookMs} ms: ${h.reason}`;
}

export function addEndpointCommands(program: Command, setExit: (code: number) => void): void {
  const endpoint = program.command("endpoint").description("check the endpoints");
  withClientOptions(
    endpoint
      .command("health")
      .description("each endpoint: healthy (answers and knows a leader) or not, and how long it took"),
    { reads: false },
  ).action(async (f: ClientFlags) => {
    const endpoints = f.endpoints
      .split(",")
      .map((e) => e.trim())
      .filter((e) => e !== "");
    if (endpoints.length === 0) throw usageError("--endpoints names no endpoint", "give host:port,...");
    const timeoutMs = parseDuration(f.timeout, "--timeout");
    const rows = await withClient(f, (c) => checkEndpoints(c, endpoints, timeoutMs));
    if (f.json) printJson({ ok: rows.every((r) => r.healthy), endpoints: rows });
    else process.stdout.write(rows.map((r) => `${healthLine(r)}\n`).join(""));
    if (rows.some((r) => !r.healthy)) setExit(EXIT.failed);
  });
}
