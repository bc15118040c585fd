// Reads a V8 .cpuprofile (node --cpu-prof) and sums self time by function and by area (our folders,
// grpc-js, protobuf, Node internals, GC...), so a profile can be quoted as a short table.

import { readFileSync } from "node:fs";

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
  readonly children?: readonly number[];
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
  readonly startTime: number;
  readonly endTime: number;
}

export interface ProfileSummary {
  /** Time on CPU (every sample but idle ones); shares below are of this. */
  readonly busyMs: number;
  readonly idleMs: number;
  /** Self time by area, largest first. */
  readonly areas: readonly { readonly area: string; readonly ms: number; readonly share: number }[];
  /** Self time by function, largest first. */
  readonly functions: readonly {
    readonly fn: string;
    readonly area: string;
    readonly ms: number;
    readonly share: number;
  }[];
}

/** Where a frame's code lives, coarsely: "src/replica", "@grpc/grpc-js", "node:internal", "(gc)"... */
export function areaOf(f: CallFrame): string {
  const u = f.url;
  if (u === "") {
    const n = f.functionName;
    if (n === "(garbage collector)") return "(gc)";
    if (n === "(idle)") return "(idle)";
    if (n === "(program)") return "(program)";
    return "(native)";
  }
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (nm !== null) return nm[1]!;
  if (u.startsWith("node:"))
    return u.startsWith("node:internal/") ? `node:${u.split("/")[1] ?? "internal"}` : u;
  const src = /\/(src\/[^/]+)\//.exec(u);
  if (src !== null) return src[1]!;
  return "other";
}

/** A span of CLOCK_MONOTONIC time in µs (process.hrtime.bigint() / 1000n): V8 stamps samples with it. */
export interface WindowUs {
  readonly fromUs: number;
  readonly toUs: number;
}

/** Sums `file`'s samples, only those inside `window` when given (leaving out start-up and shutdown). */
export function summarizeProfile(file: string, window?: WindowUs, top = 30): ProfileSummary {
  const p = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  let at = p.startTime;
  p.samples.forEach((id, i) => {
    const delta = p.timeDeltas[i] ?? 0;
    at += delta;
    if (window !== undefined && (at < window.fromUs || at > window.toUs)) return;
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  });
  const areas = new Map<string, number>();
  const fns = new Map<string, { area: string; us: number }>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id);
    if (n === undefined) continue;
    const area = areaOf(n.callFrame);
    if (area === "(idle)") {
      idle += us;
      continue;
    }
    total += us;
    areas.set(area, (areas.get(area) ?? 0) + us);
    const file = n.callFrame.url.replace(/^.*\/(node_modules|src)\//, "$1/");
    const fn = `${n.callFrame.functionName || "(anonymous)"} ${file}:${n.callFrame.lineNumber + 1}`;
    const e = fns.get(fn) ?? { area, us: 0 };
    e.us += us;
    fns.set(fn, e);
  }
  const share = (us: number): number => us / total;
  return {
    busyMs: total / 1000,
    idleMs: idle / 1000,
    areas: [...areas]
      .sort((a, b) => b[1] - a[1])
      .map(([area, us]) => ({ area, ms: us / 1000, share: share(us) })),
    functions: [...fns]
      .sort((a, b) => b[1].us - a[1].us)
      .slice(0, top)
      .map(([fn, e]) => ({ fn, area: e.area, ms: e.us / 1000, share: share(e.us) })),
  };
}

export function profileText(s: ProfileSummary): string {
  const pct = (x: number): string => `${(100 * x).toFixed(1).padStart(5)}%`;
  return [
    `on CPU ${(s.busyMs / 1000).toFixed(1)} s, idle ${(s.idleMs / 1000).toFixed(1)} s; self time (share of on-CPU) by area:`,
    ...s.areas.filter((a) => a.share >= 0.005).map((a) => `  ${pct(a.share)}  ${a.area}`),
    "top functions by self time:",
    ...s.functions.map((f) => `  ${pct(f.share)}  ${f.fn}`),
  ].join("\n");
}
