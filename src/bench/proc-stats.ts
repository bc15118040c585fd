// What the OS says about a process: CPU seconds (user + system, all threads) and resident memory (now and
// peak) from /proc, and a sampler that keeps the peak RSS of a set of processes over a window.

import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

export interface ProcSample {
  /** utime + stime of every thread of the process, in seconds. */
  readonly cpuSeconds: number;
  /** VmRSS, resident set size now. */
  readonly rssBytes: number;
  /** VmHWM, the peak resident set size over the process's life. */
  readonly peakRssBytes: number;
}

let clockTicksPerSecond: number | null = null;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === null) {
    const out = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
    const n = Number(out.stdout?.trim());
    clockTicksPerSecond = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clockTicksPerSecond;
}

/** The process's figures, or null when it is gone (or /proc is not there). */
export function readProc(pid: number): ProcSample | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the command name (which may hold spaces) start at field 3; utime is 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    return {
      cpuSeconds: ticks / ticksPerSecond(),
      rssBytes: kbField(status, "VmRSS") * 1024,
      peakRssBytes: kbField(status, "VmHWM") * 1024,
    };
  } catch {
    return null;
  }
}

function kbField(status: string, name: string): number {
  const m = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status);
  return m === null ? 0 : Number(m[1]);
}

/** CPU seconds of each pid now (0 for a process that is gone). */
export function cpuSecondsOf(pids: readonly number[]): number[] {
  return pids.map((p) => readProc(p)?.cpuSeconds ?? 0);
}

/** Samples VmRSS of `pids` every `everyMs` and keeps each one's maximum since the last reset. */
export class RssSampler {
  private readonly peaks: number[];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pids: readonly number[],
    everyMs = 100,
  ) {
    this.peaks = pids.map(() => 0);
    this.sample();
    this.timer = setInterval(() => this.sample(), everyMs);
    this.timer.unref();
  }

  /** Peak RSS of each pid since the last reset, in bytes; then starts a new window. */
  takePeaks(): number[] {
    this.sample();
    const out = [...this.peaks];
    this.peaks.fill(0);
    return out;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private sample(): void {
    this.pids.forEach((pid, i) => {
      const s = readProc(pid);
      if (s !== null && s.rssBytes > (this.peaks[i] ?? 0)) this.peaks[i] = s.rssBytes;
    });
  }
}

/** CPU seconds every core of the machine spent busy (all but idle and iowait), from /proc/stat. */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return (total - idle) / ticksPerSecond();
  } catch {
    return Number.NaN;
  }
}
