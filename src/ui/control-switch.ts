// How a node learns that `raftkv local` runs it and offers fault buttons: two environment variables that
// `raftkv local` sets for its children (never set them for a node started by hand, except in a test).
// Without them the dashboard shows no fault buttons and refuses leadership transfers.

import { RaftKvError } from "../lib/errors.ts";
import type { ControlEndpoint } from "./dashboard.ts";

export const CONTROL_URL_ENV = "RAFTKV_LOCAL_CONTROL_URL";
export const CONTROL_TOKEN_ENV = "RAFTKV_LOCAL_CONTROL_TOKEN";

type Env = Readonly<Record<string, string | undefined>>;

export function controlFromEnv(env: Env, nodeId: number): ControlEndpoint | null {
  const url = env[CONTROL_URL_ENV];
  const token = env[CONTROL_TOKEN_ENV];
  if ((url === undefined || url === "") && (token === undefined || token === "")) return null;
  const bad = (why: string): never => {
    throw new RaftKvError({
      code: "CONFIG",
      message: `${CONTROL_URL_ENV} and ${CONTROL_TOKEN_ENV}: ${why}`,
      nodeId,
      hint: "they are set by `raftkv local` for its nodes: unset them",
    });
  };
  if (url === undefined || token === undefined || token.length < 16)
    return bad("both are needed, the token of 16 characters or more");
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return bad(`not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== "http:" || parsed.hostname !== "127.0.0.1")
    return bad(`expected http://127.0.0.1:<port>, got ${JSON.stringify(url)}`);
  return { url: parsed.origin, token };
}

/** "0=http://127.0.0.1:60100,1=..." (serve's --ui-members) as a map of dashboard origins. */
export function parseMembers(text: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const part of text.split(",").filter((p) => p !== "")) {
    const eq = part.indexOf("=");
    const id = Number(part.slice(0, eq));
    let origin = "";
    try {
      origin = new URL(part.slice(eq + 1)).origin;
    } catch {
      origin = "";
    }
    if (eq <= 0 || !Number.isSafeInteger(id) || id < 0 || !/^https?:/.test(origin) || out.has(id))
      throw new RaftKvError({
        code: "CONFIG",
        message: `invalid setting --ui-members: expected id=http(s)://host:port for each member, got "${part}"`,
        hint: "e.g. --ui-members 0=http://127.0.0.1:60100,1=http://127.0.0.1:60101",
      });
    out.set(id, origin);
  }
  return out;
}
