// Who may use the dashboard: without TLS, loopback clients only, asking for a loopback or member host
// (a guard against DNS rebinding); with TLS, only over TLS with a client certificate signed by the
// cluster CA, like the API. Cross-origin use (the page gathers every member's stream) is allowed for the
// other members' dashboard origins only; state-changing calls need a custom header, which a foreign page
// cannot send without a CORS preflight that is refused.

import type { IncomingMessage } from "node:http";
import { isIP } from "node:net";
import type { TLSSocket } from "node:tls";

export interface AccessPolicy {
  readonly tls: boolean;
  /** Origins ("http://127.0.0.1:60101") of the other members' dashboards. */
  readonly allowedOrigins: ReadonlySet<string>;
  /** Host names (no port) besides loopback ones that a request may name in Host. */
  readonly allowedHosts: ReadonlySet<string>;
}

export interface Refusal {
  readonly status: number;
  readonly message: string;
}

/** Header every state-changing dashboard call carries (its value: "1"). */
export const WRITE_HEADER = "x-raftkv-ui";

export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const a = address.startsWith("::ffff:") ? address.slice(7) : address;
  return a === "::1" || (isIP(a) === 4 && a.startsWith("127."));
}

function hostName(host: string): string {
  if (host.startsWith("[")) return host.slice(1, host.indexOf("]"));
  const colon = host.lastIndexOf(":");
  return colon < 0 ? host : host.slice(0, colon);
}

/** Why `req` may not use the dashboard, or null when it may. */
export function refusal(req: IncomingMessage, policy: AccessPolicy): Refusal | null {
  const socket = req.socket as Partial<TLSSocket>;
  const host = req.headers.host ?? "";
  if (policy.tls) {
    if (socket.encrypted !== true)
      return {
        status: 403,
        message: `this node has TLS configured: open https://${host}/ui/ with a client certificate signed by the cluster CA`,
      };
    if (socket.authorized !== true)
      return {
        status: 403,
        message: `the dashboard needs a client certificate signed by the cluster CA (tlsCaFile), like the API: ${String(socket.authorizationError ?? "none presented")}`,
      };
    return null;
  }
  if (!isLoopbackAddress(req.socket.remoteAddress))
    return {
      status: 403,
      message: `without TLS the dashboard answers loopback clients only (this request came from ${req.socket.remoteAddress ?? "an unknown address"}); configure TLS to reach it from elsewhere`,
    };
  const name = hostName(host);
  if (!(name === "localhost" || isLoopbackAddress(name) || policy.allowedHosts.has(name)))
    return {
      status: 403,
      message: `Host "${host}" is not a loopback address or a member's host (a guard against DNS rebinding); open the dashboard at http://127.0.0.1:<port>/ui/`,
    };
  return null;
}

/** The request's Origin when it is another member's dashboard, else null. */
export function allowedCrossOrigin(req: IncomingMessage, policy: AccessPolicy): string | null {
  const origin = req.headers.origin;
  return origin !== undefined && policy.allowedOrigins.has(origin) ? origin : null;
}

/** True when the request comes from this origin, another member's, or no browser page at all. */
export function originAccepted(req: IncomingMessage, policy: AccessPolicy): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  const scheme = policy.tls ? "https" : "http";
  return origin === `${scheme}://${req.headers.host ?? ""}` || policy.allowedOrigins.has(origin);
}

/** CORS headers for an allowed cross-origin request (none otherwise: the browser then refuses it). */
export function corsHeaders(req: IncomingMessage, policy: AccessPolicy): Record<string, string> {
  const origin = allowedCrossOrigin(req, policy);
  if (origin === null) return {};
  return {
    "access-control-allow-origin": origin,
    "access-control-allow-credentials": "true",
    "access-control-allow-methods": "GET, PUT, DELETE, POST",
    "access-control-allow-headers": `${WRITE_HEADER}, x-raftkv-control, content-type`,
    "access-control-max-age": "600",
    vary: "Origin",
  };
}
