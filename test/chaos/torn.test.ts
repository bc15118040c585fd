// The chaos harness's torn write: the real FileStorage recovers every synced entry and reports the tear.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { lastCompleteFrame, newestSegment, tearWalTail } from "../../src/chaos/torn.ts";
import type { Entry } from "../../src/core/types.ts";
import { Prng } from "../../src/lib/prng.ts";
import { FileStorage } from "../../src/storage/file-storage.ts";
import { RealFileSystem } from "../../src/storage/real-file-system.ts";

function storage(dir: string, warnings: string[]): FileStorage {
  return new FileStorage({
    fs: new RealFileSystem(),
    dir,
    clusterId: "torn-test",
    nodeId: 1,
    logger: { info: () => {}, warn: (_f, m) => warnings.push(m) },
  });
}

function entries(from: number, count: number, term: number): Entry[] {
  return Array.from({ length: count }, (_, i) => ({
    index: from + i,
    term,
    kind: "command" as const,
    data: new TextEncoder().encode(`entry ${from + i} ${"x".repeat(i * 7)}`),
  }));
}

test("a torn tail after SIGKILL loses nothing that was synced, and recovery reports it", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const dir = mkdtempSync(join(tmpdir(), "raftkv-torn-"));
    try {
      const warnings: string[] = [];
      const s = storage(dir, warnings);
      await s.open();
      const written = [...entries(1, 5, 1), ...entries(6, 1 + (seed % 7), 2)];
      await s.save({ term: 2, votedFor: 1, commitIndex: 3 }, written.slice(0, 5), true);
      await s.save(null, written.slice(5), true);
      await s.close();
      const torn = await tearWalTail(dir, new Prng(seed));
      assert.ok(torn !== null, "there is a record to tear");
      assert.ok(torn.bytes >= 1 && torn.bytes < torn.recordBytes);
      const again = storage(dir, warnings);
      const rec = await again.open();
      assert.deepEqual(
        rec.entries.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]),
        written.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]),
        `seed ${seed}`,
      );
      assert.equal(rec.hardState.term, 2);
      assert.ok(
        warnings.some((w) => w.includes("torn")),
        `seed ${seed}: recovery reports the torn tail (${warnings.join("; ")})`,
      );
      // Repaired: writing goes on after the last good record.
      await again.save(null, entries(written.length + 1, 1, 2), true);
      await again.close();
      const seg = await newestSegment(dir);
      assert.ok(seg !== null);
      const last = lastCompleteFrame(readFileSync(seg));
      assert.ok(last !== null);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test("tearing twice without a restart in between still leaves exactly one torn record", async () => {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-torn-"));
  try {
    const warnings: string[] = [];
    const s = storage(dir, warnings);
    await s.open();
    const written = entries(1, 4, 1);
    await s.save({ term: 1, votedFor: null, commitIndex: 0 }, written, true);
    await s.close();
    assert.ok((await tearWalTail(dir, new Prng(1))) !== null);
    assert.ok((await tearWalTail(dir, new Prng(2))) !== null);
    const again = storage(dir, warnings);
    const rec = await again.open();
    await again.close();
    assert.deepEqual(
      rec.entries.map((e) => e.index),
      [1, 2, 3, 4],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("no WAL folder: nothing to tear", async () => {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-torn-"));
  try {
    assert.equal(await tearWalTail(dir, new Prng(1)), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
