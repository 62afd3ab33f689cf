// portd dashboard: renders the `projects` snapshots of /api/events, and
// sends Start / Stop / Restart to the API with the page's token.
"use strict";

const token = document.querySelector('meta[name="portd-token"]').content;
const rows = document.getElementById("rows");
let projects = [];
const openLogs = new Set();   // keys whose log tail is shown
const logText = new Map();    // key -> last lines fetched
const busy = new Map();       // key -> action under way
let drawn = new Map();        // key -> { sig, tr }: the rows on the page

const RUNNING = new Set(["running", "unhealthy", "starting"]);

function stateOf(p) {
  return p.defined && p.server ? p.server.state : (p.state || "idle");
}

function urlOf(p) {
  const port = location.port ? ":" + location.port : "";
  return location.protocol + "//" + p.host + port + "/";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function bytes(n) {
  if (n == null) return "—";
  if (n < 1024 * 1024) return (n / 1024).toFixed(0) + " KiB";
  if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + " MiB";
  return (n / 1024 / 1024 / 1024).toFixed(2) + " GiB";
}

function span(secs) {
  if (secs < 60) return Math.floor(secs) + "s";
  if (secs < 3600) return Math.floor(secs / 60) + "m " + Math.floor(secs % 60) + "s";
  if (secs < 86400) return Math.floor(secs / 3600) + "h " + Math.floor(secs % 3600 / 60) + "m";
  return Math.floor(secs / 86400) + "d " + Math.floor(secs % 86400 / 3600) + "h";
}

function ago(iso) {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  return s < 5 ? "just now" : span(Math.max(0, s)) + " ago";
}

function uptime(p) {
  const s = p.server;
  if (!s || !s.started || !RUNNING.has(s.state)) return null;
  return (Date.now() - Date.parse(s.started)) / 1000;
}

function pidOf(p) {
  if (p.server && p.server.pid) return p.server.pid;
  return p.child_pid || p.pid || null;
}

function actionButtons(p) {
  if (!p.defined) return [];
  const st = stateOf(p);
  const doing = busy.get(p.key);
  const mk = (action, label, enabled) => el("button", {
    class: "act " + action + (doing === action ? " busy" : ""),
    "data-action": action,
    disabled: !!doing || !enabled,
    onclick: () => act(p, action),
  }, doing === action ? label + "…" : label);
  const expanded = openLogs.has(p.key);
  return [
    mk("start", "Start", st === "stopped" || st === "crash-looping"),
    mk("stop", "Stop", st !== "stopped"),
    mk("restart", "Restart", RUNNING.has(st) || st === "crash-looping"),
    el("button", {
      class: "logs", "aria-expanded": String(expanded), onclick: () => toggleLogs(p),
    }, "Logs"),
  ];
}

function row(p) {
  const st = stateOf(p);
  const up = uptime(p);
  const ev = p.server && p.server.last_event;
  const name = el("td", { class: "name" },
    // No host name (e.g. a relay's own entry): no link to nowhere.
    p.host ? el("a", { href: urlOf(p), target: "_blank", rel: "noopener" }, p.project)
      : el("span", { class: "plain" }, p.project),
    p.key !== p.project ? el("span", { class: "key", title: p.key }, p.key) : null);
  return el("tr", { class: "project", "data-key": p.key, "data-state": st },
    name,
    el("td", { class: "num" }, p.port),
    el("td", {}, el("span", { class: "pill " + st, title: (p.server && p.server.reason) || "" }, st)),
    el("td", { class: "num" }, pidOf(p) || "—"),
    el("td", { class: "num uptime", "data-started": up === null ? null : p.server.started },
      up === null ? "—" : span(up)),
    el("td", { class: "num" }, bytes(p.rss_bytes)),
    el("td", { class: "num" }, p.connections == null ? "—" : p.connections),
    el("td", { class: "event", title: ev ? ev.text + " (" + ev.at + ")" : "" },
      ev ? ev.text : el("span", { class: "dim" }, p.defined ? "—" : (p.command ? p.command.join(" ") : "—")),
      ev ? el("span", { class: "when", "data-at": ev.at }, ago(ev.at)) : null),
    el("td", { class: "actions" }, ...actionButtons(p)));
}

function logRow(p) {
  const lines = logText.get(p.key);
  const body = lines === undefined ? el("div", { class: "nolog" }, "loading…")
    : lines.length === 0 ? el("div", { class: "nolog" }, "no log yet: it has not been started")
    : el("pre", {}, lines.join("\n"));
  return el("tr", { class: "logrow", "data-key": p.key }, el("td", { colspan: "9" }, body));
}

function render() {
  const keepScroll = new Map();
  for (const pre of rows.querySelectorAll("tr.logrow pre")) {
    const k = pre.closest("tr").dataset.key;
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    keepScroll.set(k, atEnd ? Infinity : pre.scrollTop);
  }
  // Rows whose project did not change are kept as they are (a click on
  // one of their buttons is never lost to a redraw).
  const frag = document.createDocumentFragment();
  const next = new Map();
  for (const p of projects) {
    const sig = JSON.stringify(p) + "|" + (busy.get(p.key) || "") + "|" + openLogs.has(p.key);
    const old = drawn.get(p.key);
    const tr = old && old.sig === sig ? old.tr : row(p);
    next.set(p.key, { sig, tr });
    frag.append(tr);
    if (openLogs.has(p.key)) frag.append(logRow(p));
  }
  drawn = next;
  rows.replaceChildren(frag);
  for (const pre of rows.querySelectorAll("tr.logrow pre")) {
    const k = pre.closest("tr").dataset.key;
    const s = keepScroll.has(k) ? keepScroll.get(k) : Infinity;
    pre.scrollTop = s === Infinity ? pre.scrollHeight : s;
  }
  document.getElementById("empty").hidden = projects.length > 0;
  document.getElementById("projects").hidden = projects.length === 0;
  const count = (f) => projects.filter(f).length;
  const defined = projects.filter((p) => p.defined);
  const summary = document.getElementById("summary");
  const part = (n, what) => el("span", {}, el("b", {}, n), " " + what);
  summary.replaceChildren(
    part(projects.length, projects.length === 1 ? "project" : "projects"),
    part(count((p) => RUNNING.has(stateOf(p)) || stateOf(p) === "active"), "running"),
    part(defined.filter((p) => stateOf(p) === "sleeping").length, "sleeping"),
    part(defined.filter((p) => stateOf(p) === "stopped").length, "stopped"));
}

function tick() {
  for (const td of rows.querySelectorAll("td.uptime[data-started]")) {
    td.textContent = span((Date.now() - Date.parse(td.dataset.started)) / 1000);
  }
  for (const s of rows.querySelectorAll(".when[data-at]")) s.textContent = ago(s.dataset.at);
}

// Whether the banner shows the registry's problem (cleared by the next
// good snapshot) rather than an action's failure (kept until dismissed).
let problemShown = false;

function banner(err, problem = false) {
  const b = document.getElementById("banner");
  problemShown = !!err && problem;
  if (!err) { b.hidden = true; b.replaceChildren(); return; }
  b.replaceChildren(
    el("button", { class: "close", onclick: () => banner(null), "aria-label": "dismiss" }, "×"),
    el("div", {}, err.error || String(err)),
    err.hint ? el("div", { class: "hint" }, "hint: " + err.hint) : null,
    err.log && err.log.length ? el("pre", {}, err.log.join("\n")) : null);
  b.hidden = false;
}

async function fetchLogs(key) {
  try {
    const r = await fetch("/api/projects/" + encodeURIComponent(key) + "/logs?n=50");
    const j = await r.json();
    logText.set(key, r.ok ? j.lines : ["(" + j.error + ")"]);
  } catch (e) {
    logText.set(key, ["(cannot read the log: " + e + ")"]);
  }
  if (openLogs.has(key)) render();
}

function toggleLogs(p) {
  if (openLogs.has(p.key)) openLogs.delete(p.key);
  else { openLogs.add(p.key); fetchLogs(p.key); }
  render();
}

async function act(p, action) {
  busy.set(p.key, action);
  render();
  try {
    const r = await fetch("/api/projects/" + encodeURIComponent(p.key) + "/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Portd-Token": token },
      body: "{}",
    });
    const j = await r.json().catch(() => ({ error: r.status + " " + r.statusText }));
    banner(r.ok ? null : { ...j, error: p.project + ": " + j.error });
  } catch (e) {
    banner({ error: p.project + ": " + action + " failed: " + e });
  } finally {
    busy.delete(p.key);
    render();
    if (openLogs.has(p.key)) fetchLogs(p.key);
  }
}

function connect() {
  const live = document.getElementById("live");
  const text = document.getElementById("live-text");
  const es = new EventSource("/api/events");
  es.addEventListener("open", () => { live.dataset.state = "live"; text.textContent = "live"; });
  es.addEventListener("error", () => { live.dataset.state = "lost"; text.textContent = "reconnecting…"; });
  es.addEventListener("projects", (e) => {
    // `NAME@relay` is an on-demand server's private port, held by its
    // supervisor: part of NAME's row, not a project of its own.
    projects = JSON.parse(e.data).filter((p) => !p.key.endsWith("@relay"));
    if (problemShown) banner(null);
    render();
    for (const k of openLogs) fetchLogs(k);
  });
  es.addEventListener("problem", (e) => banner(JSON.parse(e.data), true));
}

connect();
setInterval(tick, 1000);
