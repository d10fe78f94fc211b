// The contacts-import page: one WebSocket to a notification gateway for this
// page's channel, one upload to the jobs service, and everything else pushed.
// No framework, no build step, nothing fetched from elsewhere.
"use strict";

(function () {
  const $ = (sel) => document.querySelector(sel);

  // A channel id of this page's own: "browser-<32 hex digits>".
  // (crypto.getRandomValues works on plain http too, unlike randomUUID.)
  function newChannel() {
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return "browser-" + Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  // What the page saw, for a person reading the console and for tests.
  const state = {
    channel: newChannel(),
    gateway: 0,        // the gateway (1-based) of the current or last socket
    last: "",          // id of the last frame: where a reconnect resumes
    ids: [],           // every notification id received, in order
    duplicates: 0,     // notifications received again (none expected)
    subscribed: 0,     // "subscribed" frames: 1 + reconnects
    imports: {},       // import id -> its view
  };
  window.importsPage = state;

  let gateways = [];   // ports of the gateways, from config.json
  let attempt = 0;     // failed connects in a row
  let ws = null;

  // Ids are "<partition>-<offset>"; the offset of "subscribed" may be -1
  // ("0--1": nothing yet).
  function offsetOf(id) {
    return Number(id.slice(id.indexOf("-") + 1));
  }

  function setConn(text, st) {
    const el = $("#conn");
    el.textContent = text;
    el.dataset.state = st;
    el.dataset.gateway = String(state.gateway);
  }

  function connLog(text) {
    const li = document.createElement("li");
    li.textContent = new Date().toLocaleTimeString() + "  " + text;
    $("#conn-log").prepend(li);
  }

  function gatewayURL(n) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let u = scheme + "//" + location.hostname + ":" + gateways[n - 1] + "/notify?channel=" + encodeURIComponent(state.channel);
    if (state.last) u += "&last=" + encodeURIComponent(state.last);
    return u;
  }

  function connect(n) {
    state.gateway = n;
    setConn("connecting to gateway " + n + "…", "connecting");
    ws = new WebSocket(gatewayURL(n));
    ws.onmessage = (e) => onFrame(JSON.parse(e.data));
    ws.onclose = (e) => onClose(n, e);
  }

  function onClose(n, e) {
    const why = e.code + (e.reason ? " " + e.reason : "");
    if (e.code === 4002) {
      // Too far behind for the gateway to resume: a real page reloads its
      // state by other means; this one starts afresh and says so.
      connLog("gateway " + n + " cannot resume from " + state.last + " (" + why + "): some notifications are lost; reconnecting afresh");
      state.last = "";
    }
    // Another instance, as a load balancer would pick; at once the first
    // time, then backing off.
    const next = (n % gateways.length) + 1;
    const wait = attempt === 0 ? 0 : Math.min(200 * 2 ** attempt, 5000);
    attempt++;
    setConn("gateway " + n + " closed (" + why + "); reconnecting to gateway " + next + "…", "closed");
    connLog("gateway " + n + " closed (" + why + "); reconnecting to gateway " + next + (state.last ? " with last=" + state.last : ""));
    setTimeout(() => connect(next), wait);
  }

  function onFrame(f) {
    if (f.type === "subscribed") {
      attempt = 0;
      state.subscribed++;
      const resumed = state.last !== "";
      state.last = f.id;
      setConn("connected to gateway " + state.gateway + (resumed && state.subscribed > 1 ? " (resumed after " + f.id + ")" : ""), "open");
      if (state.subscribed > 1) connLog("connected to gateway " + state.gateway + ", resuming after " + f.id);
      updateButton();
      return;
    }
    if (f.type !== "notification") return;
    if (state.last && offsetOf(f.id) <= offsetOf(state.last)) {
      state.duplicates++;
      return;
    }
    state.last = f.id;
    state.ids.push(f.id);
    show(f.id, f.data);
  }

  // --- imports ---

  function view(imp, jobs) {
    let v = state.imports[imp];
    if (v) return v;
    const el = document.createElement("article");
    el.className = "import card";
    el.id = "imp-" + imp;
    el.dataset.import = imp;
    const h = document.createElement("h2");
    h.textContent = "Import " + imp;
    const summary = document.createElement("div");
    summary.className = "summary";
    const bar = document.createElement("progress");
    bar.max = jobs;
    bar.value = 0;
    const done = document.createElement("div");
    done.className = "completed";
    done.hidden = true;
    const list = document.createElement("ol");
    list.className = "jobs";
    const tiles = [];
    for (let j = 0; j < jobs; j++) {
      const li = document.createElement("li");
      li.className = "job waiting";
      li.dataset.job = String(j);
      const b = document.createElement("b");
      b.textContent = "job " + (j + 1);
      const s = document.createElement("span");
      s.textContent = "waiting";
      li.append(b, s);
      list.append(li);
      tiles.push({ el: li, status: s, taken: 0, done: 0 });
    }
    el.append(h, summary, bar, done, list);
    $("#imports").prepend(el);
    v = { el, summary, bar, done, tiles, jobs, taken: 0, finished: 0, imported: 0, rejected: 0, completions: 0 };
    state.imports[imp] = v;
    render(v);
    return v;
  }

  function render(v) {
    v.summary.textContent = v.finished + " of " + v.jobs + " jobs done · " + v.imported + " contacts imported · " + v.rejected + " rejected";
    v.bar.value = v.finished;
    const d = v.el.dataset;
    d.jobs = String(v.jobs);
    d.taken = String(v.taken);
    d.done = String(v.finished);
    d.completed = String(v.completions);
  }

  function show(id, n) {
    const v = view(n.import, n.jobs);
    let text = "";
    if (n.kind === "job-taken" || n.kind === "job-done") {
      const t = v.tiles[n.job];
      if (!t) return;
      if (n.kind === "job-taken") {
        if (t.taken++ === 0) v.taken++;
        if (t.done === 0) {
          t.el.className = "job taken";
          t.status.textContent = n.importer;
        }
        text = "job " + (n.job + 1) + " of " + n.jobs + " taken by " + n.importer + " (" + n.contacts + " contacts)";
      } else {
        if (t.done++ === 0) { // a job handled again counts once
          v.finished++;
          v.imported += n.imported || 0;
          v.rejected += n.rejected || 0;
        }
        t.el.className = "job done";
        t.status.textContent = "✓ " + n.importer;
        text = "job " + (n.job + 1) + " of " + n.jobs + " done by " + n.importer + ": " + (n.imported || 0) + " imported, " + (n.rejected || 0) + " rejected";
      }
    } else if (n.kind === "import-completed") {
      v.completions++;
      v.done.hidden = false;
      v.done.textContent = "✓ Import completed: " + n.jobs + " jobs, " + v.imported + " contacts imported, " + v.rejected + " rejected";
      text = "import completed (" + n.jobs + " jobs)";
    } else {
      text = "unknown notification " + JSON.stringify(n);
    }
    render(v);
    const li = document.createElement("li");
    li.dataset.id = id;
    const c = document.createElement("code");
    c.textContent = id;
    li.append(c, document.createTextNode(n.import + ": " + text));
    const log = $("#log");
    log.prepend(li);
    while (log.childElementCount > 300) log.lastElementChild.remove();
  }

  // --- upload ---

  function updateButton() {
    $("#import").disabled = !(state.subscribed > 0 && $("#file").files.length > 0);
  }

  $("#file").addEventListener("change", updateButton);
  $("#upload").addEventListener("submit", async (e) => {
    e.preventDefault();
    const file = $("#file").files[0];
    const status = $("#upload-status");
    status.className = "status";
    status.textContent = "uploading " + file.name + "…";
    $("#import").disabled = true;
    try {
      const resp = await fetch("imports?channel=" + encodeURIComponent(state.channel), {
        method: "POST", headers: { "Content-Type": "text/csv" }, body: file,
      });
      if (resp.status !== 202) throw new Error((await resp.text()).trim() || resp.statusText);
      const a = await resp.json();
      view(a.import, a.jobs);
      status.textContent = "Import " + a.import + " accepted: " + a.contacts + " contacts in " + a.jobs + " jobs. Watch them below.";
      status.dataset.import = a.import;
    } catch (err) {
      status.className = "status error";
      status.textContent = "Upload failed: " + err.message;
    } finally {
      updateButton();
    }
  });

  // --- start ---

  fetch("config.json").then((r) => r.json()).then((cfg) => {
    gateways = cfg.gateways;
    // ?gateway=N picks the first gateway; otherwise a random one, as a
    // load balancer would.
    let n = Number(new URLSearchParams(location.search).get("gateway"));
    if (!(n >= 1 && n <= gateways.length)) n = 1 + Math.floor(Math.random() * gateways.length);
    connect(n);
  }).catch((err) => setConn("cannot load config.json: " + err.message, "closed"));
})();
