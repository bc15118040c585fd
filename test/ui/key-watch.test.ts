// The key browser's live watch (src/ui/key-watch.ts) over a real StoreStateMachine on an HTTP server of
// the test's own: events under the prefixes only, in revision order, keys and values as text or hex;
// resume after Last-Event-ID; a stream the compaction overtook ends with a reason; bad queries get 400
// and a full node 429; a page that stops reading is dropped with a reason and never holds more than the
// bound.

import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { encodeMvccCommand } from "../../src/kv/mvcc-codec.ts";
import type { MvccCommand } from "../../src/kv/mvcc-types.ts";
import { StoreStateMachine } from "../../src/kv/store-state-machine.ts";
import { MemStore } from "../../src/store/mem-store.ts";
import { KeyWatches, type KeyWatchLimits, parseWatchQuery, textOrHex } from "../../src/ui/key-watch.ts";
import { waitFor } from "../e2e/harness.ts";

const b = (s: string) => new TextEncoder().encode(s);

function store() {
  const sm = new StoreStateMachine({ store: new MemStore() });
  let index = 0;
  const apply = (c: MvccCommand) => sm.applyAny(++index, encodeMvccCommand(c));
  const put = (key: Uint8Array | string, value: Uint8Array | string) =>
    apply({
      op: "put",
      key: typeof key === "string" ? b(key) : key,
      value: typeof value === "string" ? b(value) : value,
      lease: 0n,
      prevKv: false,
      ignoreValue: false,
      ignoreLease: false,
    });
  const del = (key: string) =>
    apply({ op: "deleteRange", key: b(key), rangeEnd: new Uint8Array(), prevKv: false });
  return { sm, put, del, compact: (revision: number) => apply({ op: "compact", revision }) };
}

async function serve(
  watches: KeyWatches,
): Promise<{ port: number; server: Server; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    watches.open(req, res, url.searchParams, {});
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as AddressInfo).port,
    server,
    close: () =>
      new Promise((r) => {
        watches.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

interface Message {
  readonly event: string;
  readonly id: string | undefined;
  readonly data: Record<string, unknown>;
}

/** An open watch stream: its status, the messages so far, and a way to wait for more. */
interface Watch {
  readonly status: number;
  readonly body: string;
  readonly messages: Message[];
  until(what: string, ok: (m: Message[]) => boolean): Promise<void>;
  close(): void;
}

function watch(port: number, path: string, headers: Record<string, string> = {}): Promise<Watch> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, headers }, (res) => {
      const messages: Message[] = [];
      let buf = "";
      res.on("data", (c: Buffer) => {
        buf += c.toString();
        let end: number;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event !== undefined && data !== undefined)
            messages.push({ event, id: /^id: (.*)$/m.exec(block)?.[1], data: JSON.parse(data) });
        }
      });
      res.on("error", () => {});
      const w: Watch = {
        status: res.statusCode ?? 0,
        get body() {
          return buf;
        },
        messages,
        until: (what, ok) => waitFor(what, () => (ok(messages) ? true : undefined), 5000, 10).then(() => {}),
        close: () => req.destroy(),
      };
      if (w.status !== 200) res.on("end", () => resolve(w));
      else resolve(w);
    });
    req.on("error", reject);
    req.end();
  });
}

const shown = (m: Message[]) =>
  m
    .filter((x) => x.event === "events")
    .flatMap((x) => x.data["events"] as { type: string; key: string; keyHex: boolean; value: string }[]);

test("text when UTF-8, hex when not; a preview cut inside a character stays text", () => {
  assert.deepEqual(textOrHex(b("héllo"), 256), { text: "héllo", hex: false, truncated: false });
  assert.deepEqual(textOrHex(new Uint8Array([0x77, 0xff, 0x00]), 256), {
    text: "77ff00",
    hex: true,
    truncated: false,
  });
  // "é" is 2 bytes: 3 bytes of "aéé" cut after the first byte of the second é.
  assert.deepEqual(textOrHex(b("aéé"), 4), { text: "aé", hex: false, truncated: true });
  assert.deepEqual(textOrHex(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]), 2), {
    text: "ffff",
    hex: true,
    truncated: true,
  });
  assert.deepEqual(textOrHex(new Uint8Array(), 256), { text: "", hex: false, truncated: false });
  assert.equal(textOrHex(b("a\tb\nc"), 256).hex, false, "tab and newline are text");
  assert.equal(textOrHex(new Uint8Array([0x61, 0, 0x62]), 256).hex, true, "a NUL is not");
  // a 4-byte character cut after 2 bytes, and one that is whole at the cut
  assert.deepEqual(textOrHex(b("ab😀"), 4), { text: "ab", hex: false, truncated: true });
  assert.deepEqual(textOrHex(b("😀c"), 4), { text: "😀", hex: false, truncated: true });
});

test("a bad watch query is refused with a reason", () => {
  const limits = { maxPrefixesPerStream: 2, maxPrefixBytes: 8 };
  const q = (s: string) => new URLSearchParams(s);
  assert.deepEqual(parseWatchQuery(q("prefix="), undefined, limits), { prefixes: [""], fromRevision: 0 });
  assert.deepEqual(parseWatchQuery(q("prefix=a&from=7"), undefined, limits), {
    prefixes: ["a"],
    fromRevision: 7,
  });
  assert.equal(parseWatchQuery(q("prefix=a&from=7"), "41", limits).fromRevision, 42, "Last-Event-ID wins");
  const refused = (s: string, re: RegExp, id?: string) =>
    assert.throws(
      () => parseWatchQuery(q(s), id, limits),
      (e: Error) => re.test(e.message) && (e as { code?: string }).code === "INVALID_ARGUMENT",
    );
  refused("", /give the prefix/);
  refused("prefix=a&prefix=b&prefix=c", /at most 2 prefixes per watch stream, got 3/);
  refused("prefix=123456789", /at most 8 bytes \(maxKeyBytes\), got 9/);
  refused("prefix=ééééé", /got 10/);
  refused("prefix=a&from=-1", /from must be a revision/);
  refused("prefix=a&from=1e3", /from must be a revision/);
  refused("prefix=a&from=99999999999999999", /from must be a revision/);
  refused("prefix=a", /Last-Event-ID must be a revision/, "x");
});

test("puts and deletes under the prefixes, in revision order, from the next revision; resume after Last-Event-ID", async () => {
  const s = store();
  s.put("w/old", "before the watch");
  const watches = new KeyWatches(() => s.sm, { pollMs: 10 });
  const http = await serve(watches);
  try {
    const w = await watch(http.port, "/ui/api/watch?prefix=w/&prefix=v/");
    assert.equal(w.status, 200);
    await w.until("the watching message", (m) => m[0]?.event === "watching");
    assert.deepEqual(w.messages[0]!.data, { prefixes: ["w/", "v/"], fromRevision: 3, revision: 2 });
    s.put("w/a", '{"n":1}');
    s.put("x/b", "not watched");
    s.put(new Uint8Array([0x77, 0x2f, 0xff]), new Uint8Array([0, 1, 2]));
    s.put("v/c", "x".repeat(300));
    s.del("w/a");
    s.del("w/never-there");
    await w.until("four events", (m) => shown(m).length >= 4);
    const events = w.messages
      .filter((m) => m.event === "events")
      .flatMap((m) => m.data["events"] as Record<string, unknown>[]);
    assert.deepEqual(
      events.map((e) => [e["type"], e["key"], e["keyHex"], e["revision"], e["value"], e["valueHex"]]),
      [
        ["put", "w/a", false, 3, '{"n":1}', false],
        ["put", "772fff", true, 5, "000102", true],
        ["put", "v/c", false, 6, "x".repeat(256), false],
        ["delete", "w/a", false, 7, "", false],
      ],
    );
    assert.equal(events[2]!["valueBytes"], 300);
    assert.equal(events[2]!["truncated"], true);
    const ids = w.messages.filter((m) => m.event === "events").map((m) => Number(m.id));
    assert.deepEqual(
      ids,
      [...ids].sort((a, b) => a - b),
      "ids in revision order",
    );
    assert.equal(ids.at(-1), 7);
    w.close();

    // A browser reconnecting says the last id it has: the stream goes on after it, with no gap.
    const again = await watch(http.port, "/ui/api/watch?prefix=w/&prefix=v/", { "last-event-id": "5" });
    await again.until("the events after revision 5", (m) => shown(m).length >= 2);
    assert.deepEqual(
      shown(again.messages).map((e) => `${e.type} ${e.key}`),
      ["put v/c", "delete w/a"],
    );
    assert.equal(again.messages[0]!.data["fromRevision"], 6);
    again.close();
  } finally {
    await http.close();
  }
});

test("a watch from a compacted revision ends with the reason; a full node answers 429, a bad query 400", async () => {
  const s = store();
  for (let i = 0; i < 5; i++) s.put(`k/${i}`, "v");
  s.compact(4);
  const watches = new KeyWatches(() => s.sm, { pollMs: 10, maxStreams: 1, maxPrefixBytes: 4 });
  const http = await serve(watches);
  try {
    const old = await watch(http.port, "/ui/api/watch?prefix=k/&from=2");
    await old.until("the end of the stream", (m) => m.some((x) => x.event === "end"));
    assert.match(
      String(old.messages.find((m) => m.event === "end")!.data["reason"]),
      /revision 2 is compacted \(the history starts at 4\)/,
    );
    await waitFor("the ended stream forgotten", () => (watches.size === 0 ? true : undefined));

    const live = await watch(http.port, "/ui/api/watch?prefix=k/");
    assert.equal(live.status, 200);
    const full = await watch(http.port, "/ui/api/watch?prefix=k/");
    assert.equal(full.status, 429);
    assert.match(full.body, /too many key watches on this node \(max 1\)/);
    const long = await watch(http.port, "/ui/api/watch?prefix=12345");
    assert.equal(long.status, 400);
    assert.match(long.body, /at most 4 bytes/);
    const none = await watch(http.port, "/ui/api/watch");
    assert.equal(none.status, 400);
    live.close();
    await waitFor("the closed stream forgotten", () => (watches.size === 0 ? true : undefined));
  } finally {
    await http.close();
  }
});

class FakeResponse extends EventEmitter {
  writableLength = 0;
  writableFinished = false;
  status = 0;
  written: string[] = [];
  ended = "";
  writeHead(status: number): this {
    this.status = status;
    return this;
  }
  write(s: string): boolean {
    this.written.push(s);
    return true;
  }
  end(s = ""): void {
    this.ended = s;
  }
  destroy(): void {}
}

test("a page that stops reading gets no more until it drains, and is dropped with a reason once stalled", () => {
  const s = store();
  let now = 0;
  const limits: Partial<KeyWatchLimits> = { maxBufferedBytes: 1000, stallLimitMs: 5000, pollMs: 1_000_000 };
  const watches = new KeyWatches(
    () => s.sm,
    limits,
    () => now,
  );
  const res = new FakeResponse();
  const req = { headers: {} } as IncomingMessage;
  watches.open(req, res as unknown as ServerResponse, new URLSearchParams("prefix="), {});
  const eventsOf = () => res.written.filter((w) => w.startsWith("id: ")).length;
  s.put("a", "1");
  watches.poll();
  assert.equal(eventsOf(), 1);
  res.writableLength = 5000; // its socket stopped draining
  s.put("b", "2");
  watches.poll();
  now = 4000;
  watches.poll();
  assert.equal(eventsOf(), 1, "nothing more is queued behind a blocked socket");
  res.writableLength = 0; // it drained
  watches.poll();
  assert.equal(eventsOf(), 2, "the held revision is sent once it drained");
  res.writableLength = 5000;
  s.put("c", "3");
  now = 5000;
  watches.poll();
  now = 10_001;
  watches.poll();
  assert.equal(watches.size, 0, "blocked for more than 5 s: dropped");
  assert.equal(watches.dropped, 1);
  assert.match(res.ended, /event: end\ndata: .*did not read its watch stream for 5000 ms.*from revision 4/);
  watches.close();
  const late = new FakeResponse();
  watches.open(req, late as unknown as ServerResponse, new URLSearchParams("prefix="), {});
  assert.equal(late.status, 503, "a stopping node opens no more watches");
  assert.match(late.ended, /this node is stopping/);
});
