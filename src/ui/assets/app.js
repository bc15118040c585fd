// raftkv dashboard: opens every member's event stream (this node's, and the others' when the node knows
// their dashboards), shows what each says about itself, and keeps showing the rest when one is down.

(() => {
  const $ = (s) => document.querySelector(s);
  const el = (tag, attrs = {}, text = "") => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== "") e.textContent = text;
    return e;
  };
  const STALE_MS = 1500;
  /** id -> { id, base, address, es, up, state, lastAtMs, downSince, error } */
  const members = new Map();
  let hello = null;
  let control = null;
  let controlState = null;
  const timeline = new Map(); // "node:seq" -> entry
  let shownLeader = null;

  const fmtMs = (ms) => (ms === null || ms === undefined ? "–" : ms < 10 ? ms.toFixed(2) : ms.toFixed(0));
  const clock = (ms) =>
    `${new Date(ms).toLocaleTimeString([], { hour12: false })}.${String(ms % 1000).padStart(3, "0")}`;

  function member(id) {
    let m = members.get(id);
    if (m === undefined) {
      m = {
        id,
        base: null,
        address: "",
        es: null,
        up: false,
        state: null,
        lastAtMs: 0,
        downSince: null,
        error: "",
      };
      members.set(id, m);
    }
    return m;
  }

  function connect(m, base) {
    if (m.es !== null) return;
    m.base = base;
    const es = new EventSource(`${base}/ui/api/events`, { withCredentials: true });
    m.es = es;
    es.addEventListener("hello", (ev) => onHello(JSON.parse(ev.data)));
    es.addEventListener("state", (ev) => {
      const f = JSON.parse(ev.data);
      m.state = f.s;
      for (const id of configIds(f.s.config)) if (!members.has(id)) member(id).fromConfig = true;
      m.up = true;
      m.downSince = null;
      m.lastAtMs = Date.now();
      for (const t of f.t) timeline.set(`${t.node}:${t.seq}`, t);
      if (f.t.length > 0) renderTimeline();
      render();
    });
    es.onerror = () => {
      if (m.up || m.downSince === null) m.downSince = Date.now();
      m.up = false;
      m.error = `no answer from ${base}`;
      render();
    };
  }

  function onHello(h) {
    if (hello === null) {
      hello = h;
      $("#cluster").textContent = `cluster ${h.clusterId} · ${h.version}`;
      $("#keys-section").hidden = !h.keys;
      $("#watch-start").hidden = !h.watch;
      if (h.control !== null) {
        control = h.control;
        $("#faults-note").hidden = false;
        void pollControl();
      }
    }
    for (const info of h.members) {
      const m = member(info.id);
      if (m.address === "") m.address = info.address;
      if (info.dashboard !== null && m.es === null) connect(m, info.dashboard);
    }
    buildCards();
  }

  // ---------------------------------------------------------------- members

  const FIELDS = [
    "member",
    "term",
    "leader",
    "commit",
    "applied",
    "last log",
    "snapshot",
    "lease",
    "lag",
    "links",
    "pid",
  ];

  function buildCards() {
    const box = $("#members");
    const ids = [...members.keys()].sort((a, b) => a - b);
    for (const id of ids) {
      if (box.querySelector(`[data-member="${id}"]`) !== null) continue;
      const card = el("div", {
        class: "card",
        "data-member": String(id),
        "data-up": "false",
        "data-role": "",
      });
      const h = el("h3");
      h.append(el("span", {}, `node ${id}`), el("span", { class: "role" }, "–"));
      card.append(h, el("div", { class: "down" }), el("div", { class: "addr note" }));
      const dl = el("dl");
      for (const f of FIELDS) dl.append(el("dt", {}, f), el("dd", { "data-f": f }, "–"));
      card.append(dl, el("div", { class: "bar" }));
      card.querySelector(".bar").append(el("i"));
      const buttons = el("div", { class: "buttons" });
      if (control !== null)
        for (const [act, label] of [
          ["kill", "Kill"],
          ["restart", "Restart"],
          ["pause", "Pause"],
          ["resume", "Resume"],
          ["transfer", "Make leader"],
        ]) {
          const b = el("button", { type: "button", "data-act": act, "data-node": String(id) }, label);
          buttons.append(b);
        }
      card.append(buttons);
      const before = [...box.children].find((c) => Number(c.dataset.member) > id);
      box.insertBefore(card, before ?? null);
    }
  }

  function clusterLeader() {
    let best = null;
    for (const m of members.values()) {
      const v = m.up && m.state !== null ? m.state.view : null;
      if (
        v !== null &&
        v.role === "leader" &&
        Date.now() - m.lastAtMs < STALE_MS &&
        (best === null || v.term > best.term)
      )
        best = v;
    }
    return best;
  }

  const configIds = (c) => (c ? [...c.voters, ...c.outgoing, ...c.learners] : []);
  const idSet = (ids) => `{${ids.join(",")}}`;

  /** The configuration to show: the leader's, else the newest an up member reports; and who said it. */
  function clusterConfig() {
    const leader = clusterLeader();
    const lc = leader === null ? null : members.get(leader.id)?.state?.config;
    if (lc) return [lc, leader.id];
    let best = null;
    let from = null;
    for (const m of members.values()) {
      const c = m.up ? m.state?.config : null;
      if (c && (best === null || c.index > best.index)) [best, from] = [c, m.id];
    }
    return [best, from];
  }

  /** voter, learner, outgoing voter (joint), or not a member, in configuration c. */
  function memberKind(c, id) {
    if (!c) return "–";
    const inNew = c.voters.includes(id);
    const inOld = c.outgoing.includes(id);
    if (inNew) return c.joint && !inOld ? "voter (incoming)" : "voter";
    if (inOld) return "outgoing voter (leaving)";
    return c.learners.includes(id) ? "learner" : "not a member";
  }

  function renderConfig(c, from) {
    const box = $("#config");
    const cell = (k, text) => {
      const d = box.querySelector(`[data-c="${k}"]`);
      if (d.textContent !== text) d.textContent = text;
    };
    box.dataset.voters = c ? c.voters.join(",") : "";
    box.dataset.learners = c ? c.learners.join(",") : "";
    box.dataset.joint = c ? String(c.joint) : "";
    cell("voters", c ? idSet(c.voters) : "–");
    cell("outgoing", c?.joint ? idSet(c.outgoing) : "none (not joint)");
    cell("learners", c ? idSet(c.learners) : "–");
    cell(
      "joint",
      c
        ? c.joint
          ? `joint: quorums need a majority of ${idSet(c.voters)} and of ${idSet(c.outgoing)}`
          : "no"
        : "–",
    );
    cell("index", c ? String(c.index) : "–");
    $("#config-source").textContent = from === null ? "" : `(as node ${from} has it)`;
  }

  /** The lease as the node last reported it, run down by the time since that frame arrived. */
  function leaseText(v, leaseMs, sinceMs) {
    switch (v.lease) {
      case "valid": {
        const left = Math.max(0, v.leaseRemainingMs - sinceMs);
        return [`${left.toFixed(0)} ms left`, Math.min(1, left / leaseMs)];
      }
      case "waitingOldLease":
        return ["waiting out old lease", 0];
      case "noopNotApplied":
        return ["NO-OP not applied", 0];
      case "noLease":
        return ["no lease (ReadIndex)", 0];
      default:
        return ["–", 0];
    }
  }

  function render() {
    buildCards();
    const leader = clusterLeader();
    const [config, configFrom] = clusterConfig();
    renderConfig(config, configFrom);
    // A member known from the configuration only is gone once a configuration no longer names it.
    for (const m of [...members.values()])
      if (m.fromConfig && config && !configIds(config).includes(m.id)) {
        members.delete(m.id);
        $(`[data-member="${m.id}"]`)?.remove();
      }
    for (const m of members.values()) {
      const card = $(`[data-member="${m.id}"]`);
      if (card === null) continue;
      const fresh = m.up && m.state !== null && Date.now() - m.lastAtMs < STALE_MS;
      const cs = controlState?.nodes.find((n) => n.id === m.id);
      card.dataset.up = String(fresh);
      card.dataset.kind = memberKind(config, m.id);
      card.querySelector(".buttons").hidden = controlState !== null && cs === undefined;
      set(card, "member", card.dataset.kind);
      const down = card.querySelector(".down");
      const v = m.state?.view ?? null;
      card.querySelector(".addr").textContent =
        `${m.base === "" ? location.origin : (m.base ?? "(no dashboard address known)")} · gRPC ${v?.address ?? m.address}`;
      if (cs !== undefined && !cs.running) down.textContent = "down (stopped)";
      else if (cs?.paused) down.textContent = "paused (SIGSTOP)";
      else if (m.base === null)
        down.textContent = "no stream: start nodes with --ui-members to see this member's own state";
      else if (!fresh)
        down.textContent =
          "down: " +
          (m.error || `no frame for ${((Date.now() - m.lastAtMs) / 1000).toFixed(1)} s`) +
          (m.downSince ? ` since ${clock(m.downSince)}` : "") +
          (v ? " · last known below" : "");
      else down.textContent = "";
      if (v === null) {
        const seen = leader?.peers.find((p) => p.id === m.id);
        if (seen !== undefined) set(card, "links", `leader's link: ${seen.connected ? "up" : "DOWN"}`);
        continue;
      }
      card.dataset.role = fresh ? v.role : "";
      card.querySelector(".role").textContent = fresh ? v.role : `was ${v.role}`;
      set(card, "term", v.term);
      set(card, "leader", v.leaderId ?? "none");
      set(card, "commit", v.commitIndex);
      set(card, "applied", v.appliedIndex);
      set(card, "last log", v.lastLogIndex);
      set(card, "snapshot", v.snapshotIndex);
      const [lt, frac] =
        fresh && v.role === "leader" ? leaseText(v, m.state.leaseMs, Date.now() - m.lastAtMs) : ["–", 0];
      set(card, "lease", lt);
      card.querySelector(".bar i").style.width = `${(frac * 100).toFixed(0)}%`;
      const lag = leader !== null ? leader.peers.find((p) => p.id === m.id) : undefined;
      set(
        card,
        "lag",
        leader !== null && leader.id === m.id
          ? "leader"
          : lag && lag.matchIndex !== null
            ? `${Math.max(0, leader.lastLogIndex - lag.matchIndex)} entries`
            : "–",
      );
      set(card, "links", v.peers.map((p) => `→${p.id} ${p.connected ? "up" : "DOWN"}`).join(", "));
      set(card, "pid", `${v.pid} · up ${(v.uptimeMs / 1000).toFixed(0)} s`);
    }
    const l = $("#leader");
    if (leader === null) {
      l.textContent = "no leader known";
      l.dataset.leader = "";
    } else {
      const key = `${leader.id}@${leader.term}`;
      if (shownLeader !== key) {
        shownLeader = key;
        l.dataset.shownAtMs = String(Date.now());
      }
      l.textContent = `leader: node ${leader.id}, term ${leader.term}`;
      l.dataset.leader = String(leader.id);
      l.dataset.term = String(leader.term);
      const lm = members.get(leader.id);
      $("#since").textContent = lm?.state ? `since ${clock(lm.state.lastLeaderChangeAtMs)}` : "";
    }
    renderLinks();
    renderStats();
  }

  function set(card, f, text) {
    const d = card.querySelector(`[data-f="${f}"]`);
    const t = String(text);
    if (d.textContent !== t) d.textContent = t;
  }

  function renderLinks() {
    const body = $("#links tbody");
    const ids = [...members.keys()].sort((a, b) => a - b);
    const rows = [];
    const seen = (a, b) => {
      const m = members.get(a);
      if (!m?.up || m.state === null) return null;
      return m.state.view.peers.find((p) => p.id === b)?.connected ?? null;
    };
    for (const a of ids)
      for (const b of ids)
        if (a < b)
          rows.push([a, b, seen(a, b), seen(b, a), controlState?.cuts.some(([x, y]) => x === a && y === b)]);
    const key = JSON.stringify(rows);
    if (body.dataset.key === key) return;
    body.dataset.key = key;
    body.replaceChildren(
      ...rows.map(([a, b, ab, ba, cut]) => {
        const tr = el("tr", { "data-link": `${a}-${b}` });
        tr.append(el("td", {}, `${a} – ${b}`));
        for (const c of [ab, ba])
          tr.append(
            el(
              "td",
              { class: c === true ? "ok" : c === false ? "bad" : "" },
              c === true ? "connected" : c === false ? "not connected" : "unknown",
            ),
          );
        const td = el("td");
        if (control !== null)
          td.append(
            el(
              "button",
              { type: "button", "data-act": cut ? "heal" : "cut", "data-a": String(a), "data-b": String(b) },
              cut ? "Heal" : "Cut",
            ),
          );
        tr.append(td);
        return tr;
      }),
    );
  }

  function renderStats() {
    const rows = (kind) => {
      const out = [];
      for (const m of [...members.values()].sort((a, b) => a.id - b.id)) {
        const st = m.up ? m.state?.stats : null;
        if (!st) continue;
        for (const [op, w] of Object.entries(st[kind]).filter(([, w]) => w.total > 0))
          out.push([m.id, op, w.perSecond.toFixed(1), fmtMs(w.p50Ms), fmtMs(w.p99Ms)]);
      }
      return out;
    };
    for (const [id, kind] of [
      ["#ops", "ops"],
      ["#fsync", "fsync"],
    ]) {
      const r = rows(kind);
      const body = $(`${id} tbody`);
      const key = JSON.stringify(r);
      if (body.dataset.key === key) continue;
      body.dataset.key = key;
      body.replaceChildren(
        ...(r.length === 0 ? [["–", "no requests yet", "", "", ""]] : r).map((cells) => {
          const tr = el("tr");
          for (const c of cells) tr.append(el("td", {}, String(c)));
          return tr;
        }),
      );
    }
    const any = [...members.values()].find((m) => m.state?.stats);
    $("#window").textContent = any ? `(last ${any.state.stats.windowSeconds.toFixed(0)} s)` : "";
  }

  function renderTimeline() {
    const all = [...timeline.values()].sort((a, b) => b.atMs - a.atMs);
    for (const t of all.slice(300)) timeline.delete(`${t.node}:${t.seq}`);
    $("#timeline").replaceChildren(
      ...all
        .slice(0, 300)
        .map((t) => el("li", { class: t.kind }, `${clock(t.atMs)} node ${t.node}: ${t.text}`)),
    );
  }

  // ---------------------------------------------------------------- fault controls (raftkv local)

  async function pollControl() {
    for (;;) {
      try {
        const r = await fetch(`${control.url}/control/state`, {
          headers: { "x-raftkv-control": control.token },
        });
        controlState = await r.json();
      } catch {
        controlState = null;
      }
      render();
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  async function act(b) {
    const a = b.dataset.act;
    let url;
    if (a === "transfer") {
      const lid = clusterLeader()?.id;
      const lm = lid === undefined ? undefined : members.get(lid);
      if (lm === undefined) return note("no leader known to hand leadership over");
      if (String(lid) === b.dataset.node) return note(`node ${lid} is the leader already`);
      url = `${lm.base ?? ""}/ui/api/transfer?to=${b.dataset.node}`;
    } else if (a === "cut" || a === "heal")
      url = `${control.url}/control/${a}?a=${b.dataset.a}&b=${b.dataset.b}`;
    else url = `${control.url}/control/${a}?node=${b.dataset.node}`;
    try {
      const r = await fetch(url, {
        method: "POST",
        headers: { "x-raftkv-control": control.token },
        credentials: a === "transfer" ? "include" : "omit",
      });
      const body = await r.json();
      note(body.message ?? body.error ?? r.statusText);
    } catch (err) {
      note(`${a} failed: ${err}`);
    }
  }

  function note(text) {
    $("#origin").textContent = text;
  }

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-act]");
    if (b !== null && control !== null) void act(b);
  });

  // ---------------------------------------------------------------- key browser

  let after = null;
  let current = null;

  function keysBase() {
    const lid = clusterLeader()?.id;
    const lm = lid === undefined ? undefined : members.get(lid);
    if (lm?.base !== null && lm?.base !== undefined) return [lm.base, "lease"];
    const up = [...members.values()].find((m) => m.up && m.base !== null);
    return [up?.base ?? "", "stale"];
  }

  async function call(path, init = {}) {
    const [base, consistency] = keysBase();
    const url = `${base + path + (path.includes("?") ? "&" : "?")}consistency=${consistency}`;
    const r = await fetch(url, { credentials: "include", ...init });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error ?? r.statusText);
    return [body, consistency];
  }

  async function search(next) {
    const prefix = $("#prefix").value;
    if (!next) after = null;
    try {
      const q =
        "/ui/api/keys?limit=50&prefix=" +
        encodeURIComponent(prefix) +
        (after === null ? "" : `&after=${encodeURIComponent(after)}`);
      const [r, consistency] = await call(q);
      after = r.next;
      $("#more").disabled = r.next === null;
      $("#keys tbody").replaceChildren(
        ...r.entries.map((e) => {
          const tr = el("tr", { "data-key": e.key });
          tr.append(
            el("td", {}, e.key),
            el("td", {}, String(e.sizeBytes)),
            el("td", {}, asText(b64(e.preview)).slice(0, 80)),
          );
          return tr;
        }),
      );
      $("#keys-status").textContent =
        `${r.entries.length} keys${r.more ? ", more follow" : ""} (${consistency} read)`;
    } catch (err) {
      $("#keys-status").textContent = `search failed: ${err.message}`;
    }
  }

  const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const asText = (bytes) => new TextDecoder().decode(bytes);
  const asHex = (bytes) =>
    [...bytes].map((x, i) => x.toString(16).padStart(2, "0") + ((i + 1) % 16 === 0 ? "\n" : " ")).join("");

  function showValue() {
    if (current === null) return;
    const mode = document.querySelector('input[name="mode"]:checked').value;
    let text = asText(current.bytes);
    if (mode === "hex") text = asHex(current.bytes);
    else if (mode === "json") {
      try {
        text = JSON.stringify(JSON.parse(text), null, 2);
      } catch (err) {
        text = `not JSON: ${err.message}`;
      }
    }
    $("#value-text").textContent = text;
  }

  async function open(key) {
    try {
      const [r] = await call(`/ui/api/key?key=${encodeURIComponent(key)}`);
      $("#value").hidden = false;
      $("#value-key").textContent = key;
      if (!r.found) {
        current = { key, bytes: new Uint8Array() };
        $("#value-size").textContent = "(not found)";
      } else {
        current = { key, bytes: b64(r.value) };
        $("#value-size").textContent = `${r.sizeBytes} bytes${r.truncated ? ", first part shown" : ""}`;
      }
      showValue();
    } catch (err) {
      $("#keys-status").textContent = `read failed: ${err.message}`;
    }
  }

  async function write(method, key, value) {
    try {
      const init = { method, headers: { "x-raftkv-ui": "1" }, body: value };
      const [r] = await call(`/ui/api/key?key=${encodeURIComponent(key)}`, init);
      $("#keys-status").textContent =
        `${method === "PUT" ? "put" : "deleted"} ${key} at revision ${r.revision}`;
      await search(false);
    } catch (err) {
      $("#keys-status").textContent = `${method} failed: ${err.message}`;
    }
  }

  $("#search").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void search(false);
  });
  $("#more").addEventListener("click", () => void search(true));
  $("#keys tbody").addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr[data-key]");
    if (tr !== null) void open(tr.dataset.key);
  });
  for (const r of document.querySelectorAll('input[name="mode"]')) r.addEventListener("change", showValue);
  $("#writes").addEventListener("change", (ev) => {
    for (const w of document.querySelectorAll(".write")) w.hidden = !ev.target.checked;
  });
  $("#put").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void write("PUT", $("#put-key").value, $("#put-value").value);
  });
  $("#delete").addEventListener(
    "click",
    () => current !== null && void write("DELETE", current.key, undefined),
  );

  // ---------------------------------------------------------------- live watch of a prefix

  const WATCH_KEEP = 200;
  /** Newest first, at most WATCH_KEEP. */
  const watched = [];
  let watchEs = null;

  function watchStatus(text) {
    $("#watch-status").textContent = text;
  }

  function stopWatch(why) {
    if (watchEs !== null) watchEs.close();
    watchEs = null;
    $("#watch").dataset.live = "";
    $("#watch-stop").disabled = true;
    if (why) watchStatus(why);
  }

  /** A refused stream's reason (EventSource does not show the answer's body). */
  async function whyRefused(url) {
    const ac = new AbortController();
    try {
      const r = await fetch(url, { credentials: "include", signal: ac.signal });
      if (r.ok) return "the stream closed";
      return (await r.json()).error ?? r.statusText;
    } catch (err) {
      return `no answer (${err.message})`;
    } finally {
      ac.abort();
    }
  }

  function renderWatch() {
    $("#watch tbody").replaceChildren(
      ...watched.map((e) => {
        const tr = el("tr", { "data-wkey": e.key, "data-type": e.type });
        const key = e.keyHex ? `0x${e.key}` : e.key;
        const value =
          e.type === "delete"
            ? ""
            : `${e.valueHex ? `0x${e.value}` : e.value}${e.truncated ? "…" : ""} (${e.valueBytes} bytes)`;
        tr.append(
          el("td", {}, String(e.revision)),
          el("td", {}, e.type),
          el("td", {}, key),
          el("td", {}, value),
        );
        return tr;
      }),
    );
  }

  function startWatch() {
    stopWatch();
    const prefix = $("#prefix").value;
    const [base] = keysBase();
    const url = `${base}/ui/api/watch?prefix=${encodeURIComponent(prefix)}`;
    const es = new EventSource(url, { withCredentials: true });
    watchEs = es;
    watched.length = 0;
    renderWatch();
    $("#watch-section").hidden = false;
    $("#watch-stop").disabled = false;
    watchStatus(`opening a watch on "${prefix}"…`);
    es.addEventListener("watching", (ev) => {
      const w = JSON.parse(ev.data);
      $("#watch").dataset.live = "true";
      watchStatus(`watching "${prefix}" from revision ${w.fromRevision} on ${base || location.origin}`);
    });
    es.addEventListener("events", (ev) => {
      const m = JSON.parse(ev.data);
      for (const e of m.events) watched.unshift(e);
      if (m.omitted > 0)
        watched.unshift({ type: `${m.omitted} more not shown`, key: "", revision: m.revision, value: "" });
      watched.length = Math.min(watched.length, WATCH_KEEP);
      renderWatch();
    });
    es.addEventListener("end", (ev) => {
      if (watchEs === es) stopWatch(`watch ended: ${JSON.parse(ev.data).reason}`);
    });
    es.onerror = () => {
      if (watchEs !== es) return;
      $("#watch").dataset.live = "";
      if (es.readyState !== EventSource.CLOSED)
        return watchStatus("watch stream lost; reconnecting (it resumes after the last revision shown)");
      stopWatch();
      void whyRefused(url).then((why) => watchStatus(`watch refused: ${why}`));
    };
  }

  $("#watch-start").addEventListener("click", startWatch);
  $("#watch-stop").addEventListener("click", () => stopWatch("stopped"));

  // ---------------------------------------------------------------- start: this node's stream first

  async function start() {
    note(`loaded from ${location.origin}`);
    for (;;) {
      try {
        const r = await fetch("/ui/api/state");
        const text = await r.text();
        if (!r.ok) throw new Error(text);
        const s = JSON.parse(text);
        connect(member(s.hello.node), "");
        onHello(s.hello);
        render();
        return;
      } catch (err) {
        note(`cannot load this node's state (${err.message.trim()}); retrying`);
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }

  setInterval(render, 100);
  void start().then(() => setTimeout(() => void search(false), 500));
})();
