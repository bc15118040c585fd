// Reads the nodes' JSON log lines after a run: elections started, leaders per term (at most one each),
// and lines that report crashes or fatal errors.

import { readFileSync } from "node:fs";

export interface ElectionFigures {
  /** Pre-vote rounds started (election timeouts). */
  readonly preVotes: number;
  /** Real elections started (a candidate incremented its term). */
  readonly elections: number;
  /** Distinct terms in which some node became leader. */
  readonly leaderTerms: number;
  /** Times some node became leader. */
  readonly leadersElected: number;
  /** Terms in which more than one node (member ids) said it became leader (invariant 4). */
  readonly twoLeaderTerms: readonly { readonly term: number; readonly nodes: readonly number[] }[];
  /** Log lines at level fatal, or not JSON (a crash's stack trace), a few per node. */
  readonly alarming: readonly string[];
}

const MAX_ALARMING_PER_NODE = 5;
const FATAL_LEVEL = 60;
/** grpc-js's line when the harness's router refuses a tunnel: a node dialing its own address, which a
 *  replacement does while the configuration it installed with a snapshot still names the old member
 *  there. Not a crash. */
const ROUTER_REFUSAL =
  /^E Failed to connect to 127\.0\.0\.1:\d+ through proxy 127\.0\.0\.1:\d+ with status 502$/;

/** Tallies the node logs at `files` (node id -> path). A missing file counts as empty. */
export function readElectionFigures(files: ReadonlyMap<number, string>): ElectionFigures {
  let preVotes = 0;
  let elections = 0;
  let leadersElected = 0;
  const leaders = new Map<number, Set<number>>();
  const alarming: string[] = [];
  for (const [node, file] of files) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    let kept = 0;
    const keep = (line: string): void => {
      if (kept++ < MAX_ALARMING_PER_NODE) alarming.push(`node ${node}: ${line.slice(0, 300)}`);
    };
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      const rec = parseLine(line);
      if (rec === null) {
        if (!ROUTER_REFUSAL.test(line)) keep(line);
        continue;
      }
      if (typeof rec.level === "number" && rec.level >= FATAL_LEVEL) keep(line);
      const msg = typeof rec.msg === "string" ? rec.msg : "";
      if (rec.event === "election") {
        if (msg.startsWith("election timeout")) preVotes++;
        else if (msg.startsWith("starting an election")) elections++;
      }
      const m = /^became leader for term (\d+)/.exec(msg);
      if (rec.event === "leader" && m !== null) {
        leadersElected++;
        const term = Number(m[1]);
        const set = leaders.get(term) ?? new Set<number>();
        // The member id the line names: a slot's log holds every node that ran there (fault member).
        set.add(typeof rec.node === "number" ? rec.node : node);
        leaders.set(term, set);
      }
    }
  }
  const twoLeaderTerms = [...leaders]
    .filter(([, s]) => s.size > 1)
    .map(([term, s]) => ({ term, nodes: [...s].sort((a, b) => a - b) }));
  return { preVotes, elections, leaderTerms: leaders.size, leadersElected, twoLeaderTerms, alarming };
}

function parseLine(line: string): Record<string, unknown> | null {
  if (!line.startsWith("{")) return null;
  try {
    const v: unknown = JSON.parse(line);
    return typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    // A line cut by SIGKILL in the middle of a write: not a crash report.
    return {};
  }
}
