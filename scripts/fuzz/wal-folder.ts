// A data folder as one fuzz input: its files plus notes ("#owner", "#written", "#mode", "#expect") in a
// small container, and the way to and from a MemFileSystem.

import { MemFileSystem } from "../../src/storage/mem-file-system.ts";
import { concat, littleEndian } from "./mutate.ts";

export const DATA_DIR = "/data";
const MAGIC = [0x52, 0x4b, 0x46, 0x5a]; // "RKFZ"

export interface Owner {
  readonly clusterId: string;
  readonly nodeId: number;
  readonly maxSegmentBytes: number;
}

/** What the folder ever held: every entry, hard state and snapshot written while it was made. Data
 *  that passes its checksums can only be one of these. */
export interface Written {
  readonly entries: string[];
  readonly hardStates: string[];
  readonly snapshots: string[];
}

/** pristine: as the generator left it; checksummed: every change left the checksums failing where
 *  it touched (disk damage, lost files); forged: some change recomputed them (a software bug or
 *  tampering, not disk damage). */
export type Mode = "pristine" | "checksummed" | "forged";

export interface Folder {
  /** Path (under DATA_DIR) to content; a path ending in "/" is a folder. */
  readonly files: Map<string, Uint8Array>;
  readonly owner: Owner;
  written: Written;
  mode: Mode;
  /** A single bit flip inside a live WAL record: recovery must refuse naming this file. */
  expect: { readonly file: string; readonly offset: number } | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeFolder(f: Folder): Uint8Array {
  const notes: [string, Uint8Array][] = [
    ["#owner", encoder.encode(JSON.stringify(f.owner))],
    ["#written", encoder.encode(JSON.stringify(f.written))],
    ["#mode", encoder.encode(f.mode)],
  ];
  if (f.expect !== null) notes.push(["#expect", encoder.encode(JSON.stringify(f.expect))]);
  const all = [...notes, ...[...f.files].sort(([a], [b]) => (a < b ? -1 : 1))];
  const parts: Uint8Array[] = [Uint8Array.from(MAGIC), littleEndian(BigInt(all.length), 4)];
  for (const [name, bytes] of all) {
    const n = encoder.encode(name);
    parts.push(littleEndian(BigInt(n.length), 2), n, littleEndian(BigInt(bytes.length), 4), bytes);
  }
  return concat(...parts);
}

/** The folder in a container; throws on a malformed container (which mutation never produces). */
export function decodeFolder(b: Uint8Array): Folder {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (!MAGIC.every((m, i) => b[i] === m)) throw new Error("not a fuzz folder container");
  let pos = 8;
  const entries = new Map<string, Uint8Array>();
  for (let i = dv.getUint32(4, true); i > 0; i--) {
    const nameLength = dv.getUint16(pos, true);
    const name = decoder.decode(b.subarray(pos + 2, pos + 2 + nameLength));
    pos += 2 + nameLength;
    const length = dv.getUint32(pos, true);
    entries.set(name, b.slice(pos + 4, pos + 4 + length));
    pos += 4 + length;
  }
  const note = (name: string): string | null => {
    const v = entries.get(name);
    entries.delete(name);
    return v === undefined ? null : decoder.decode(v);
  };
  const owner = JSON.parse(note("#owner") ?? "null") as Owner;
  const written = JSON.parse(note("#written") ?? '{"entries":[],"hardStates":[],"snapshots":[]}') as Written;
  const modeText = note("#mode");
  const mode: Mode = modeText === "pristine" || modeText === "checksummed" ? modeText : "forged";
  const expectText = note("#expect");
  const expect = expectText === null ? null : (JSON.parse(expectText) as Folder["expect"]);
  return { files: entries, owner, written, mode, expect };
}

/** A MemFileSystem holding the folder's files, all durable. */
export async function materialize(folder: Folder): Promise<MemFileSystem> {
  const fs = new MemFileSystem();
  await fs.mkdir(DATA_DIR);
  for (const [path, bytes] of folder.files) {
    const dir = path.slice(0, path.lastIndexOf("/"));
    await fs.mkdir(dir);
    if (path.endsWith("/")) continue;
    const h = await fs.open(path, "overwrite");
    await h.append(bytes);
    await h.sync();
    await h.close();
  }
  for (const dir of new Set([
    DATA_DIR,
    ...[...folder.files.keys()].map((p) => p.slice(0, p.lastIndexOf("/"))),
  ]))
    await fs.syncDir(dir);
  return fs;
}

/** The files under DATA_DIR (one level of subfolders, as the layout has); a folder is "<path>/". */
export async function collect(fs: MemFileSystem): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  if (!(await fs.exists(DATA_DIR))) return files;
  for (const name of await fs.readdir(DATA_DIR)) {
    const path = `${DATA_DIR}/${name}`;
    try {
      files.set(path, fs.peek(path));
    } catch {
      files.set(`${path}/`, new Uint8Array(0));
      for (const inner of await fs.readdir(path)) files.set(`${path}/${inner}`, fs.peek(`${path}/${inner}`));
    }
  }
  return files;
}
