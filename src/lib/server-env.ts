// glibc malloc settings for raftkv server processes, which the launchers in this repository (`raftkv
// local`, the benchmarks) pass to the nodes they start; set them yourself where you run `raftkv serve`.
//
// A node allocates many short-lived buffers (gRPC frames, entries, snapshot chunks). With glibc's
// defaults the main heap fragments, and freed memory stays resident: at a million 256-byte values a
// node's RSS was 318–332 MB with the defaults and 252–294 MB with these, the JS heap the same
// (npm run bench -- --memory-keys 1000000, issue 6). ARENA_MAX bounds the per-thread arenas, a fixed
// MMAP_THRESHOLD (which also turns off glibc's adaptive threshold) gives every block of 128 KiB or
// more its own mapping, returned on free, and TRIM_THRESHOLD returns the heap's free top sooner.
// They are read by glibc when the process starts: setting them from inside Node is too late.

export const SERVER_MALLOC_ENV: Readonly<Record<string, string>> = {
  MALLOC_ARENA_MAX: "2",
  MALLOC_MMAP_THRESHOLD_: "131072",
  MALLOC_TRIM_THRESHOLD_: "262144",
};

/** `env` with SERVER_MALLOC_ENV added where `env` does not set a variable itself. */
export function serverProcessEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return { ...SERVER_MALLOC_ENV, ...env };
}
