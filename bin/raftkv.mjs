#!/usr/bin/env node
// The `raftkv` executable: registers tsx's ESM loader and runs the TypeScript CLI (no build step).
import { register } from "tsx/esm/api";

register();
await import("../src/cli/main.ts");
