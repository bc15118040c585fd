// The `raftkv` command: serve, put/get/del/cas/range, watch/txn/lease, status, local and wal dump/verify;
// one-line errors, exit codes.

import { Command, CommanderError } from "commander";
import { packageVersion } from "../lib/version.ts";
import { addCoordCommands } from "./coord-commands.ts";
import { addEndpointCommands } from "./endpoint.ts";
import { addKvCommands } from "./kv-commands.ts";
import { addLocalCommand } from "./local.ts";
import { addMemberCommands } from "./member.ts";
import { EXIT, exitCodeOf, printError, usageError } from "./output.ts";
import { addServeCommand } from "./serve.ts";
import { addSnapshotCommands } from "./snapshot.ts";
import { addWalCommands } from "./wal.ts";

export async function runCli(argv: readonly string[]): Promise<number> {
  let exitCode: number = EXIT.ok;
  // --json anywhere: errors, usage errors included, are one JSON object on stdout.
  const json = argv.slice(2).includes("--json");
  const command = argv[2] ?? "";
  const program = new Command("raftkv")
    .description("a strongly consistent, replicated key-value store (Raft with leader leases)")
    .version(packageVersion(), "-V, --version", "print the version")
    .showHelpAfterError(json ? false : "(run with --help for usage)")
    .exitOverride()
    .addHelpText(
      "after",
      `
Exit codes: 0 ok, 1 the request failed (unreachable, no leader, deadline), 2 bad usage or argument,
3 key not found (get) or comparison failed (cas).`,
    );
  if (json)
    program.configureOutput({
      outputError: (text) =>
        printError(command, usageError(text.replace(/^error: /, "").trim(), "see --help"), true),
    });
  addServeCommand(program);
  addKvCommands(program, (code) => (exitCode = code));
  addCoordCommands(program, (code) => (exitCode = code));
  addLocalCommand(program);
  addMemberCommands(program);
  addEndpointCommands(program, (code) => (exitCode = code));
  addSnapshotCommands(program);
  addWalCommands(program, (code) => (exitCode = code));
  try {
    await program.parseAsync([...argv]);
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === "commander.helpDisplayed" ||
        err.code === "commander.version" ||
        err.code === "commander.help"
      )
        return EXIT.ok;
      return EXIT.usage; // commander already printed "error: ..."
    }
    printError(command, err, json);
    return exitCodeOf(err);
  }
  return typeof process.exitCode === "number" && process.exitCode !== 0 ? process.exitCode : exitCode;
}

// `serve` and `local` return only once their nodes have stopped. Exit once stdout has drained, so
// lingering handles (gRPC channels in backoff) cannot keep a finished command alive.
const code = await runCli(process.argv);
process.stdout.write("", () => process.exit(code));
