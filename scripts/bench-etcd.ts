// `npm run bench:etcd`: the same workloads on raftkv and on a 3-node etcd (when `etcd` is on the PATH),
// alternating the two row by row under one load generator; prints medians and raftkv / etcd ratios.

import { spawnSync } from "node:child_process";
import { parseArgs } from "../src/bench/args.ts";
import { runSuite } from "../src/bench/suite.ts";

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}
const version = spawnSync("etcd", ["--version"], { encoding: "utf8" });
if (version.error !== undefined || version.status !== 0) {
  console.error(
    "bench:etcd needs `etcd` on the PATH (Debian: apt-get install etcd-server); it installs nothing itself",
  );
  process.exit(2);
}
console.log(version.stdout.split("\n")[0]);
await runSuite({ ...args, etcd: true, log: (line) => console.log(line) });
process.exit(0);
