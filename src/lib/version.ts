// The version in raftkv's package.json, for Status, metrics and `raftkv --version`.

import { readFileSync } from "node:fs";

/** raftkv's version: its package.json is two folders up from src/lib, three from the compiled
 *  dist/src/lib. "unknown" when neither is there. */
export function packageVersion(): string {
  for (const up of ["../../package.json", "../../../package.json"]) {
    try {
      const pkg: unknown = JSON.parse(readFileSync(new URL(up, import.meta.url), "utf8"));
      if (typeof pkg === "object" && pkg !== null && "name" in pkg && pkg.name === "raftkv")
        return "version" in pkg && typeof pkg.version === "string" ? pkg.version : "unknown";
    } catch {
      // Not there: try the next folder up.
    }
  }
  return "unknown";
}
