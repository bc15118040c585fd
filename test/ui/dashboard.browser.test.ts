// The dashboard in a real headless browser (Debian's chromium driven by playwright-core) against a
// 3-node `raftkv local`: it shows three members and one leader and the configuration (voters {0,1,2}; a
// learner added and removed through the CLI), live-watches a prefix (a put and a delete through the CLI
// under it show, a put elsewhere does not), follows a leadership change within a
// second after the leader is killed from the page (loaded from the leader itself, so the page's own node
// is the one that goes), shows a key put through the CLI, keeps showing the killed node as down, brings
// it back with the restart button; the other buttons (leadership transfer, cut and heal a link, pause and
// resume) show their effect; and the page stays under its weight. A second test, over a node of the
// test's own, shows a joint configuration on the panel and the cards, and the one after it.
// Skipped, saying why, where chromium is missing (RAFTKV_CHROMIUM names another binary).

import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import type { Browser, Page } from "playwright-core";
import { votersOnly } from "../../src/core/membership.ts";
import { startOperatorServer } from "../../src/server/operator-http.ts";
import { Dashboard } from "../../src/ui/dashboard.ts";
import { runCli, waitFor } from "../e2e/harness.ts";
import { FakeNode } from "./fake-node.ts";

const CHROMIUM = process.env["RAFTKV_CHROMIUM"] ?? "/usr/bin/chromium";
const BIN = fileURLToPath(new URL("../../bin/raftkv.mjs", import.meta.url));
/** The page's HTML, script and style sheet together (measured: 30,712 bytes). */
const PAGE_WEIGHT_LIMIT_BYTES = 64 * 1024;
/** A watched put shows in the page's watch list within this of the CLI's answer. */
const WATCH_LIMIT_MS = 5000;
/** The issue's figure: the page shows a new leader within this of its election. */
const FOLLOW_LIMIT_MS = 1000;

const skip = existsSync(CHROMIUM)
  ? false
  : `no chromium at ${CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does) or set RAFTKV_CHROMIUM`;

/** `count` consecutive ports that are free now: all bound at once, then released. */
async function consecutivePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * 40_000);
    const held: net.Server[] = [];
    let ok = true;
    for (let i = 0; i < count && ok; i++) {
      const s = net.createServer();
      ok = await new Promise<boolean>((resolve) => {
        s.once("error", () => resolve(false));
        s.listen(first + i, "127.0.0.1", () => resolve(true));
      });
      if (ok) held.push(s);
    }
    await Promise.all(held.map((s) => new Promise((r) => s.close(r))));
    if (ok) return first;
  }
  throw new Error(`no ${count} consecutive free ports on 127.0.0.1 in 50 tries`);
}

interface Local {
  readonly proc: ChildProcess;
  readonly dashboard: string;
  readonly endpoints: string;
  readonly metricsBase: number;
  readonly output: () => string;
  readonly closed: Promise<number | null>;
}

async function startLocal(dir: string): Promise<Local> {
  const base = await consecutivePorts(3);
  const metricsBase = await consecutivePorts(3);
  const proc = spawn(
    process.execPath,
    [
      BIN,
      "local",
      "--base-port",
      String(base),
      "--metrics-base-port",
      String(metricsBase),
      "--data-dir",
      dir,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  proc.stderr?.on("data", (d: Buffer) => (out += d.toString()));
  const closed = new Promise<number | null>((r) => proc.on("close", (code) => r(code)));
  const dashboard = await waitFor(
    "raftkv local to print the dashboard's address",
    () => /dashboard: +(http:\/\/\S+\/ui\/)/.exec(out)?.[1],
    90_000,
  );
  const leader = Number(/leader is node (\d+)/.exec(out)?.[1] ?? 0);
  return {
    proc,
    // The page of the node that was leader at start: the kill below is likely to take the page's own.
    dashboard: dashboard.replace(String(metricsBase), String(metricsBase + leader)),
    endpoints: [0, 1, 2].map((i) => `127.0.0.1:${base + i}`).join(","),
    metricsBase,
    output: () => out,
    closed,
  };
}

interface Shown {
  readonly cards: { id: number; up: boolean; role: string; text: string }[];
  readonly leader: number | null;
  readonly term: number;
  /** Date.now() in the page when it first showed this leader and term. */
  readonly shownAtMs: number;
}

/** Read in the page (a string: the test compiles without the DOM's types). */
const SHOWN = `(() => {
  const cards = [...document.querySelectorAll("[data-member]")].map((c) => ({
    id: Number(c.dataset.member), up: c.dataset.up === "true", role: c.dataset.role || "", text: c.textContent || "",
  }));
  const l = document.querySelector("#leader").dataset;
  return { cards, leader: l.leader ? Number(l.leader) : null, term: Number(l.term || 0), shownAtMs: Number(l.shownAtMs || 0) };
})()`;

/** The configuration panel's voters, learners and joint cells ("" until a frame filled them in). */
const CONFIG = `(() => {
  const cell = (k) => document.querySelector('#config [data-c="' + k + '"]').textContent;
  return cell("index") === "–" ? { voters: "", learners: "", joint: "" }
    : { voters: cell("voters"), learners: cell("learners"), joint: cell("joint") };
})()`;

/** What the page shows: each member card's up/role, and the leader in the header. */
function shown(page: Page): Promise<Shown> {
  return page.evaluate(SHOWN) as Promise<Shown>;
}

test("the dashboard on a 3-node raftkv local, in headless chromium", { skip, timeout: 240_000 }, async () => {
  const { chromium } = await import("playwright-core");
  const dir = mkdtempSync(join(tmpdir(), "raftkv-ui-"));
  let local: Local | null = null;
  let browser: Browser | null = null;
  try {
    local = await startLocal(dir);
    browser = await chromium.launch({ executablePath: CHROMIUM });
    const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    const weights = new Map<string, number>();
    page.on("response", (r) => {
      const type = r.request().resourceType();
      if (type === "document" || type === "script" || type === "stylesheet")
        void r.body().then((b) => weights.set(r.url(), b.length));
    });
    const loading = performance.now();
    await page.goto(local.dashboard);

    // Three members, each up, exactly one of them the leader.
    const first = await waitFor(
      "three members up and one leader on the page",
      async () => {
        const s = await shown(page);
        const leaders = s.cards.filter((c) => c.role === "leader");
        return s.cards.length === 3 && s.cards.every((c) => c.up) && leaders.length === 1 && s.leader !== null
          ? s
          : undefined;
      },
      60_000,
    );
    assert.equal(first.cards.find((c) => c.role === "leader")!.id, first.leader);

    // The configuration panel: three voters, no learners, not joint; every card says "voter".
    const config = await waitFor("the configuration panel filled in", async () => {
      const c = (await page.evaluate(CONFIG)) as { voters: string; learners: string; joint: string };
      return c.voters !== "" ? c : undefined;
    });
    assert.deepEqual(config, { voters: "{0,1,2}", learners: "{}", joint: "no" });
    assert.deepEqual(await page.locator('[data-member] [data-f="member"]').allTextContents(), [
      "voter",
      "voter",
      "voter",
    ]);

    // A learner added through the CLI (at an address where nothing runs) shows in the panel and on a card
    // of its own; removed, it leaves both.
    const cli = (...args: string[]) => runCli([...args, "--endpoints", local!.endpoints]);
    const add = await cli("member", "add", `127.0.0.1:${await consecutivePorts(1)}`, "--learner");
    assert.equal(add.code, 0, add.stderr);
    const learner = Number(/added learner member (\d+)/.exec(add.stdout)?.[1]);
    assert.ok(learner > 2, add.stdout);
    await waitFor("the learner in the configuration panel", async () =>
      ((await page.evaluate(CONFIG)) as { learners: string }).learners === `{${learner}}` ? true : undefined,
    );
    await waitFor("the learner's card", async () =>
      (await page.locator(`[data-member="${learner}"] [data-f="member"]`).count()) > 0 &&
      (await page.textContent(`[data-member="${learner}"] [data-f="member"]`)) === "learner"
        ? true
        : undefined,
    );
    const removed = await cli("member", "remove", String(learner));
    assert.equal(removed.code, 0, removed.stderr);
    await waitFor("the learner gone from the panel and the cards", async () =>
      ((await page.evaluate(CONFIG)) as { learners: string }).learners === "{}" &&
      (await page.locator(`[data-member="${learner}"]`).count()) === 0
        ? true
        : undefined,
    );
    const nav = (await page.evaluate(
      "JSON.stringify(performance.getEntriesByType('navigation')[0])",
    )) as string;
    const { domContentLoadedEventEnd, loadEventEnd } = JSON.parse(nav) as Record<string, number>;
    console.log(
      `page load: DOMContentLoaded ${domContentLoadedEventEnd?.toFixed(0)} ms, load ${loadEventEnd?.toFixed(0)} ms, every member shown ${(performance.now() - loading).toFixed(0)} ms after navigating (figures, not asserted)`,
    );

    const total = [...weights.values()].reduce((a, b) => a + b, 0);
    console.log(
      `page weight: ${total} bytes (${[...weights].map(([u, b]) => `${u.split("/").pop() || "index"} ${b}`).join(", ")})`,
    );
    assert.equal(
      weights.size,
      3,
      `the page is one document, one script and one style sheet: ${[...weights.keys()]}`,
    );
    assert.ok(
      total < PAGE_WEIGHT_LIMIT_BYTES,
      `page weight ${total} bytes is over ${PAGE_WEIGHT_LIMIT_BYTES}`,
    );

    // A key put through the CLI shows in the key browser, its value pretty-printed as JSON.
    const put = await runCli(["put", "ui/greeting", '{"hello":"world"}', "--endpoints", local.endpoints]);
    assert.equal(put.code, 0, put.stderr);
    await page.fill("#prefix", "ui/");
    await waitFor(
      "the key in the key browser",
      async () => {
        await page.click("#search button[type=submit]");
        return (await page.locator('tr[data-key="ui/greeting"]').count()) > 0 ? true : undefined;
      },
      30_000,
      500,
    );
    await page.click('tr[data-key="ui/greeting"]');
    await page.check('input[name="mode"][value="json"]');
    await waitFor("the value as JSON", async () =>
      (await page.textContent("#value-text"))?.includes('"hello": "world"') ? true : undefined,
    );

    // A live watch on a prefix: a key put through the CLI under it shows in the watch list within a few
    // seconds of the put; one outside the prefix, put just before it, does not; a delete shows too.
    await page.fill("#prefix", "ui/live/");
    await page.click("#watch-start");
    await waitFor("the watch stream open", async () =>
      (await page.getAttribute("#watch", "data-live")) === "true" ? true : undefined,
    );
    const outside = await cli("put", "ui/other", "not watched");
    assert.equal(outside.code, 0, outside.stderr);
    const watchedPut = await cli("put", "ui/live/x", "watched value");
    assert.equal(watchedPut.code, 0, watchedPut.stderr);
    const putDoneAt = performance.now();
    const watchRow = (key: string, type: string) =>
      page.locator(`#watch tr[data-wkey="${key}"][data-type="${type}"]`);
    await waitFor(
      "the put in the watch list",
      async () => ((await watchRow("ui/live/x", "put").count()) > 0 ? true : undefined),
      WATCH_LIMIT_MS,
      20,
    );
    console.log(`watched put shown ${(performance.now() - putDoneAt).toFixed(0)} ms after the CLI returned`);
    assert.match((await watchRow("ui/live/x", "put").textContent()) ?? "", /watched value \(13 bytes\)/);
    assert.equal(await page.locator('#watch tr[data-wkey="ui/other"]').count(), 0, "outside the prefix");
    const del = await cli("del", "ui/live/x");
    assert.equal(del.code, 0, del.stderr);
    await waitFor(
      "the delete in the watch list",
      async () => ((await watchRow("ui/live/x", "delete").count()) > 0 ? true : undefined),
      WATCH_LIMIT_MS,
      20,
    );
    assert.deepEqual(
      await page
        .locator("#watch tbody tr")
        .evaluateAll((rows) =>
          rows.map((r) => (r as unknown as { dataset: Record<string, string> }).dataset["type"]),
        ),
      ["delete", "put"],
      "newest first",
    );

    // Kill the leader from the page; the page must follow the new leader.
    const old = first.leader!;
    await page.click(`[data-member="${old}"] button[data-act="kill"]`);
    const next = await waitFor(
      "a new leader on the page after the kill",
      async () => {
        const s = await shown(page);
        return s.leader !== null && s.leader !== old ? s : undefined;
      },
      60_000,
    );
    const state = (await (
      await fetch(`http://127.0.0.1:${local.metricsBase + next.leader!}/ui/api/state`)
    ).json()) as {
      timeline: { kind: string; term: number; atMs: number }[];
    };
    const became = state.timeline.find((t) => t.kind === "leader" && t.term === next.term);
    assert.ok(became !== undefined, `node ${next.leader}'s timeline has its election for term ${next.term}`);
    const lagMs = next.shownAtMs - became.atMs;
    console.log(`new leader ${next.leader} (term ${next.term}) shown ${lagMs} ms after it was elected`);
    assert.ok(
      lagMs < FOLLOW_LIMIT_MS,
      `the page showed node ${next.leader} as leader ${lagMs} ms after it became leader for term ${next.term} (limit ${FOLLOW_LIMIT_MS} ms)`,
    );

    // The killed node stays on the page, as down; the restart button brings it back.
    const down = await waitFor("the killed node shown as down", async () => {
      const c = (await shown(page)).cards.find((x) => x.id === old);
      return c !== undefined && !c.up && c.text.includes("down") ? c : undefined;
    });
    assert.match(down.text, /down/);
    await page.click(`[data-member="${old}"] button[data-act="restart"]`);
    await waitFor(
      "the restarted node up again",
      async () => ((await shown(page)).cards.find((x) => x.id === old)?.up === true ? true : undefined),
      60_000,
    );

    // Leadership transfer: the button on a follower's card makes it the leader.
    const now = await waitFor("a leader with every member up", async () => {
      const s = await shown(page);
      return s.leader !== null && s.cards.every((c) => c.up) ? s : undefined;
    });
    const target = now.cards.find((c) => c.id !== now.leader)!.id;
    // A leader may decline a transfer for a moment (one under way, the target behind): press again.
    let said = "";
    await waitFor(
      `node ${target} leader after the transfer button`,
      async () => {
        if ((await shown(page)).leader === target) return true;
        await page.click(`[data-member="${target}"] button[data-act="transfer"]`);
        await page.waitForTimeout(2000);
        said = (await page.textContent("#origin")) ?? "";
        return (await shown(page)).leader === target ? true : undefined;
      },
      60_000,
      0,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the page said: ${said}`);
    });

    // Cut the link between the leader and a follower: both sides see it down; heal it.
    const follower = now.cards.find((c) => c.id !== target)!.id;
    const [a, b] = [target, follower].sort((x, y) => x - y);
    const row = `tr[data-link="${a}-${b}"]`;
    await page.click(`${row} button[data-act="cut"]`);
    await waitFor(
      `link ${a}-${b} shown cut`,
      async () => ((await page.textContent(row))?.match(/not connected/g)?.length === 2 ? true : undefined),
      30_000,
    );
    await page.click(`${row} button[data-act="heal"]`);
    await waitFor(
      `link ${a}-${b} shown healed`,
      async () => ((await page.textContent(row))?.match(/not connected/g) === null ? true : undefined),
      30_000,
    );

    // Pause a follower: its card says so; resume it: it is up again.
    const paused = now.cards.find((c) => c.id !== target && c.id !== follower)?.id ?? follower;
    await page.click(`[data-member="${paused}"] button[data-act="pause"]`);
    await waitFor("the paused node shown as paused", async () =>
      (await page.textContent(`[data-member="${paused}"] .down`))?.includes("paused") ? true : undefined,
    );
    await page.click(`[data-member="${paused}"] button[data-act="resume"]`);
    await waitFor(
      "the resumed node up again",
      async () => ((await shown(page)).cards.find((x) => x.id === paused)?.up === true ? true : undefined),
      30_000,
    );
    assert.deepEqual(errors, [], "no script errors on the page");
  } finally {
    await browser?.close();
    if (local !== null) {
      local.proc.kill("SIGINT");
      const code = await local.closed;
      if (code !== 0) console.log(`raftkv local exited with ${code}:\n${local.output()}`);
    }
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the configuration panel and the cards while joint and after, in headless chromium", {
  skip,
  timeout: 60_000,
}, async () => {
  const { chromium } = await import("playwright-core");
  const node = new FakeNode();
  node.membership = { ...votersOnly([0, 1, 3]), outgoing: [0, 1, 2], learners: [4] };
  node.configIndex = 12;
  const dashboard = new Dashboard({
    node,
    keys: null,
    watchSource: null,
    maxValueBytes: 1024,
    leaseMs: 250,
    members: new Map(),
    tls: false,
    control: null,
  });
  const server = await startOperatorServer(node.registry, {} as never, "127.0.0.1", 0, [dashboard], null);
  let browser: Browser | null = null;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM });
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.port}/ui/`);
    const panel = () =>
      page.evaluate(
        `Object.fromEntries([...document.querySelectorAll("#config [data-c]")].map((d) => [d.dataset.c, d.textContent]))`,
      ) as Promise<Record<string, string>>;
    const kinds = () =>
      page.evaluate(
        `[...document.querySelectorAll("[data-member]")].map((c) => c.dataset.member + " " + c.querySelector('[data-f="member"]').textContent)`,
      ) as Promise<string[]>;
    const joint = await waitFor("the joint configuration on the page", async () => {
      const p = await panel();
      return p["index"] === "12" && (await kinds()).length === 5 ? p : undefined;
    });
    assert.deepEqual(joint, {
      voters: "{0,1,3}",
      outgoing: "{0,1,2}",
      learners: "{4}",
      joint: "joint: quorums need a majority of {0,1,3} and of {0,1,2}",
      index: "12",
    });
    assert.deepEqual(await kinds(), [
      "0 voter",
      "1 voter",
      "2 outgoing voter (leaving)",
      "3 voter (incoming)",
      "4 learner",
    ]);
    // The joint configuration left: node 2 (known from the node's peers) is no member any more.
    node.membership = { ...votersOnly([0, 1, 3]), learners: [4] };
    node.configIndex = 13;
    const left = await waitFor("the configuration after the joint one", async () => {
      const p = await panel();
      return p["index"] === "13" ? p : undefined;
    });
    assert.equal(left["joint"], "no");
    assert.equal(left["outgoing"], "none (not joint)");
    assert.deepEqual(await kinds(), ["0 voter", "1 voter", "2 not a member", "3 voter", "4 learner"]);
  } finally {
    await browser?.close();
    server.server.closeAllConnections();
    await new Promise((r) => server.server.close(r));
  }
});
