// `npm run bench`: raftkv under the issue-6 workloads through the real client (see src/bench/args.ts for
// the options); also the profile (--profile), memory (--memory-keys) and soak (--soak) modes.

import { parseArgs } from "../src/bench/args.ts";
import { runIdle } from "../src/bench/idle.ts";
import { runMemory, runProfile, runSoak } from "../src/bench/modes.ts";
import { runSuite } from "../src/bench/suite.ts";

let args: ReturnType<typeof parseArgs>;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  console.error((err as Error).message);
  process.exit(2);
}
const log = (line: string): void => console.log(line);
if (args.profileSeconds > 0) await runProfile(args, log);
else if (args.memoryKeys > 0) await runMemory(args, log);
else if (args.soakSeconds > 0) await runSoak(args, log);
else if (args.idleSeconds > 0) await runIdle(args, log);
else await runSuite({ ...args, etcd: false, log });
process.exit(0);
