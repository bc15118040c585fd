import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { checkValueStore } from "../kv/value-store-conformance.ts";
import { AssertionError } from "../lib/assert.ts";
import { FileValueStore } from "./value-file.ts";

function withDir(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "raftkv-values-"));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("FileValueStore keeps what was added until released, across buffer flushes and compactions", () => {
  withDir((dir) => {
    for (let seed = 1; seed <= 20; seed++) {
      const s = new FileValueStore(join(dir, "values"), { writeBufferBytes: 256, compactMinBytes: 512 });
      checkValueStore(s, { seed, ops: 2000, maxValueBytes: 100 });
      s.close();
    }
  });
});

test("FileValueStore's read cache stays bounded and never serves a released or cleared value", () => {
  withDir((dir) => {
    for (const readCacheBytes of [0, 3000]) {
      for (let seed = 1; seed <= 10; seed++) {
        const s = new FileValueStore(join(dir, "values"), {
          writeBufferBytes: 256,
          compactMinBytes: 512,
          readCacheBytes,
        });
        checkValueStore(s, { seed, ops: 2000, maxValueBytes: 100 });
        assert.ok(s.stats().cachedBytes <= readCacheBytes, `cache holds ${s.stats().cachedBytes} bytes`);
        s.close();
      }
    }
    const s = new FileValueStore(join(dir, "values"), { writeBufferBytes: 64, readCacheBytes: 4000 });
    const a = s.add(new Uint8Array(100).fill(1));
    assert.equal(s.read(a), s.read(a), "a second read is served from the cache");
    assert.equal(s.stats().cachedValues, 1);
    const scanned = s.add(new Uint8Array(100).fill(3));
    assert.deepEqual(s.read(scanned, true), new Uint8Array(100).fill(3));
    assert.equal(s.stats().cachedValues, 1, "a scan read is not cached");
    s.release(scanned);
    s.release(a);
    assert.equal(s.stats().cachedValues, 0);
    const b = s.add(new Uint8Array(100).fill(2));
    assert.equal(b, a, "the handle is reused");
    assert.deepEqual(s.read(b), new Uint8Array(100).fill(2));
    const many = Array.from({ length: 40 }, (_, i) => s.add(new Uint8Array(100).fill(i)));
    for (const h of many) s.read(h);
    assert.ok(s.stats().cachedBytes <= 4000, `cache holds ${s.stats().cachedBytes} bytes`);
    assert.ok(s.stats().cachedValues >= 10, `only ${s.stats().cachedValues} values cached`);
    assert.deepEqual(s.read(many[0]!), new Uint8Array(100).fill(0), "an evicted value is read again");
    s.clear();
    assert.equal(s.stats().cachedValues, 0);
    s.close();
  });
});

test("FileValueStore compacts once dead bytes exceed live ones and the minimum", () => {
  withDir((dir) => {
    const s = new FileValueStore(join(dir, "values"), { writeBufferBytes: 64, compactMinBytes: 1000 });
    const keep = s.add(new Uint8Array(100).fill(7));
    for (let i = 0; i < 30; i++) s.release(s.add(new Uint8Array(100).fill(i)));
    // 3000 dead bytes would be there without compaction; after it, little more than the live 100.
    assert.ok(s.stats().fileBytes < 1200, `file is ${s.stats().fileBytes} bytes`);
    assert.deepEqual(s.read(keep), new Uint8Array(100).fill(7));
    assert.equal(s.stats().liveBytes, 100);
    s.close();
  });
});

test("FileValueStore leaves no file in its folder; two stores at one path are separate", () => {
  withDir((dir) => {
    const first = new FileValueStore(join(dir, "values"), { writeBufferBytes: 8 });
    const kept = first.add(new Uint8Array(100).fill(1));
    assert.equal(existsSync(join(dir, "values")), false);
    const second = new FileValueStore(join(dir, "values"));
    assert.throws(() => second.read(0), AssertionError);
    assert.deepEqual(first.read(kept), new Uint8Array(100).fill(1));
    first.close();
    const h = second.add(Uint8Array.of(1, 2));
    second.release(h);
    assert.throws(() => second.read(h), AssertionError);
    assert.throws(() => second.release(h), AssertionError);
    second.close();
  });
});
