"use strict";
// Weir's dashboard: one file, no dependencies. Every piece of data reaches the
// page as text (textContent / Node.append), never as HTML.

const TERMINAL = new Set(["Completed", "Failed", "Crashed", "Cancelled"]);
const STATES = ["Scheduled", "Late", "AwaitingRetry", "Pending", "Running",
  "Cancelling", "Completed", "Failed", "Crashed", "Cancelled"];
const REASONS = ["turn", "limit", "paused", "deferred", "retry", "scheduled", "unsorted"];
const main = document.getElementById("main");
const authBox = document.getElementById("auth");
let me = null; // the whoami answer; null while unknown
let view = null; // the current view's AbortController
let shown = ""; // path + query of the rendered view

// ---------- DOM helpers ----------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  add(el, kids);
  return el;
}

function add(el, kids) {
  for (const k of kids.flat(9)) {
    if (k != null && k !== false && k !== true && k !== "") el.append(k);
  }
}

// Replaces a box's content, keeping keyboard focus on the "same" element.
function swap(box, ...kids) {
  const a = document.activeElement;
  let sel = null;
  if (a && a !== box && box.contains(a)) {
    const href = a.getAttribute("href");
    if (a.id) sel = `#${CSS.escape(a.id)}`;
    else if (href != null) sel = `a[href="${CSS.escape(href)}"]`;
  }
  box.replaceChildren();
  add(box, kids);
  if (sel) box.querySelector(sel)?.focus({ preventScroll: true });
}

const enc = encodeURIComponent;
const td = (...kids) => h("td", {}, ...kids);
const num = (v) => h("td", { class: "num" }, v ?? "-");
const dash = (v) => (v == null || v === "" ? "-" : v);
// Run ids are UUIDv7: their first digits are a timestamp, shared by runs
// made together, so a short form takes the random tail.
const short = (id) => String(id).slice(-8);
const pretty = (v) => JSON.stringify(v ?? null, null, 2);
const badge = (s, attrs) => h("span", { class: `state state-${String(s).toLowerCase()}`, ...attrs }, s);
const runLink = (id) => h("a", { href: `/runs/${enc(id)}`, class: "run-id" }, h("code", {}, id));
const pluginLink = (name, label) => h("a", { href: `/plugins#plugin-${enc(name)}` }, label ?? name);
const digest = (d) => (d ? h("code", { title: d }, String(d).replace(/^sha256:/, "").slice(0, 12)) : "-");
const tags = (list) => (list?.length ? list.map((t) => [h("span", { class: "tag" }, t), " "]) : "-");
const ms = (v) => (v == null ? "-" : `${v} ms`);
const count = (o) => Object.entries(o ?? {}).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(", ");
const waitWords = (w) => REASONS.filter((k) => w?.[k] > 0).map((k) => `${w[k]} ${k}`).join(", ") || "-";
const title = (t) => { document.title = `${t} · Weir`; };

// A table inside a horizontal scroller. Tables with an id are always drawn
// (tests and links rely on them); others give way to `empty` when rowless.
function table(heads, rows, attrs = {}, empty = "None.") {
  if (!rows.length && !attrs.id) return h("p", { class: "empty" }, empty);
  return [
    h("div", { class: "scroll" }, h("table", attrs,
      h("thead", {}, h("tr", {}, heads.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows))),
    rows.length ? null : h("p", { class: "empty" }, empty),
  ];
}

function facts(pairs, attrs = {}) {
  return h("dl", { class: "facts", ...attrs }, pairs.filter(Boolean).map(([k, v]) =>
    h("div", {}, h("dt", {}, k), h("dd", {}, v ?? "-"))));
}

// ---------- numbers, times, durations ----------

const nf = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const clock = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
const dtf = new Intl.DateTimeFormat(undefined, clock);
const dtfYear = new Intl.DateTimeFormat(undefined, { year: "numeric", ...clock });

function when(iso) {
  if (!iso) return "-";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const f = d.getFullYear() === new Date().getFullYear() ? dtf : dtfYear;
  return h("time", { datetime: iso, title: `${d.toISOString().slice(0, 19).replace("T", " ")} UTC` }, f.format(d));
}

function dur(msec) {
  if (!(msec >= 0)) return "-";
  if (msec < 1000) return `${Math.round(msec)} ms`;
  const s = msec / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.floor(s)} s`;
  const m = Math.floor(s / 60), hr = Math.floor(m / 60);
  if (m < 60) return `${m} min ${Math.floor(s % 60)} s`;
  if (hr < 24) return `${hr} h ${m % 60} min`;
  return `${Math.floor(hr / 24)} d ${hr % 24} h`;
}

function took(r) {
  if (!r.started_at) return "-";
  const end = r.ended_at ? Date.parse(r.ended_at) : Date.now();
  return r.ended_at ? dur(end - Date.parse(r.started_at)) : `${dur(end - Date.parse(r.started_at))} so far`;
}

function ord(n) {
  const s = ["th", "st", "nd", "rd"], v = n % 100;
  return `${n}${s[(v - 20) % 10] || s[v] || s[0]}`;
}

// ---------- API ----------

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function token() {
  try { return sessionStorage.getItem("weir.token"); } catch { return null; }
}

async function api(path, { method = "GET", body, signal, raw = false } = {}) {
  const headers = { Accept: raw ? "*/*" : "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal, cache: "no-store" });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new Error(`Cannot reach the server (${e.message}).`);
  }
  if (!res.ok) {
    let msg = `${res.status} ${res.statusText}`.trim();
    try {
      // {"error": {"code", "message"}} or {"error": "code", "detail": "..."}
      const j = await res.json(), e = j?.error;
      msg = (e && typeof e === "object" ? e.message : j?.detail ?? j?.message ?? e) || msg;
    } catch { /* not JSON: keep the status line */ }
    if (res.status === 401) signIn(t ? `The server refused this token: ${msg}` : null);
    throw new HttpError(res.status, msg);
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

// Shows an error in a box (once: a repeated message is not re-announced).
function fail(box, e) {
  if (e?.name === "AbortError") return;
  const msg = e?.message || String(e);
  if (box.textContent !== msg) box.replaceChildren(h("p", { class: "error", role: "alert" }, msg));
}

const errorOf = (e) => { const b = h("div"); fail(b, e); return b; };
// A part of a page that may fail alone: resolves to the value or the error.
const soft = (p) => p.catch((e) => { if (e.name === "AbortError") throw e; return e; });
const part = (x, draw) => (x instanceof Error ? errorOf(x) : draw(x));

function sleep(msec, signal) {
  return new Promise((ok) => {
    const stop = () => { clearTimeout(t); ok(); };
    const t = setTimeout(() => { signal.removeEventListener("abort", stop); ok(); }, msec);
    signal.addEventListener("abort", stop, { once: true });
  });
}

// Calls fn every `msec` until the view is left, fn returns false or the
// thing is not found; errors show in `box` and clear on the next success.
async function poll(signal, msec, box, fn) {
  while (!signal.aborted) {
    try {
      const more = await fn();
      box.replaceChildren();
      if (more === false) return;
    } catch (e) {
      if (signal.aborted) return;
      fail(box, e);
      if (e.status === 404) return;
    }
    await sleep(msec, signal);
  }
}

// Server-sent events over fetch (EventSource cannot send Authorization).
async function events(signal, onEvent, onOpen) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      const res = await api("/api/v1/runs/events", { signal, raw: true });
      onOpen(true);
      const reader = res.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        delay = 1000;
        buf = (buf + dec.decode(value, { stream: true })).replace(/\r\n/g, "\n");
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let name = "message";
          const data = [];
          for (const line of frame.split("\n")) {
            const c = line.indexOf(":");
            if (c === 0) continue; // a comment, e.g. ": keepalive"
            const field = c < 0 ? line : line.slice(0, c);
            const v = c < 0 ? "" : line.slice(c + 1).replace(/^ /, "");
            if (field === "event") name = v;
            else if (field === "data") data.push(v);
          }
          if (data.length) onEvent(name, data.join("\n"));
        }
      }
    } catch {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    onOpen(false);
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 10000);
  }
}

// ---------- who is signed in ----------

async function whoami() {
  try {
    me = await api("/api/v1/whoami");
  } catch (e) {
    me = null;
    if (e.status === 401) return; // api() showed the sign-in form
  }
  drawAuth();
}

function drawAuth() {
  if (me?.auth === false || (!me && !token())) return authBox.replaceChildren();
  if (me?.kind === "anyone") return signIn();
  const who = me ? [me.role ?? me.kind, me.team && `team ${me.team}`].filter(Boolean).join(" · ") : "signed in";
  authBox.replaceChildren(
    h("span", { id: "whoami" }, who),
    h("button", { id: "signout", type: "button", class: "secondary", onclick: signOut }, "Sign out"));
}

function signIn(msg) {
  let form = document.getElementById("signin");
  if (!form) {
    form = h("form", { id: "signin", onsubmit: submitToken },
      h("label", { for: "token" }, "API token"),
      h("input", { id: "token", type: "password", autocomplete: "off", required: true }),
      h("button", { type: "submit" }, "Sign in"),
      h("p", { id: "signin-error", class: "error", role: "alert", hidden: true }));
    authBox.replaceChildren(form);
  }
  const p = form.querySelector("#signin-error");
  p.textContent = msg ?? "";
  p.hidden = !msg;
}

async function submitToken(e) {
  e.preventDefault();
  const v = e.currentTarget.querySelector("#token").value.trim();
  if (!v) return;
  try { sessionStorage.setItem("weir.token", v); } catch { /* storage off */ }
  await whoami();
  render(true);
}

async function signOut() {
  try { sessionStorage.removeItem("weir.token"); } catch { /* storage off */ }
  me = null;
  await whoami();
  render(true);
}

// ---------- routing ----------

const routes = [
  [/^\/$/, overview],
  [/^\/runs$/, runsView],
  [/^\/runs\/([^/]+)$/, runView],
  [/^\/plugins$/, pluginsView],
  [/^\/pools\/([^/]+)$/, poolView],
];

function render(focus) {
  view?.abort();
  view = new AbortController();
  const signal = view.signal;
  shown = location.pathname + location.search;
  const path = location.pathname.replace(/(.)\/+$/, "$1");
  let fn = notFound, args = [];
  for (const [re, f] of routes) {
    const m = re.exec(path);
    if (!m) continue;
    try { args = m.slice(1).map(decodeURIComponent); fn = f; } catch { /* bad escape: not found */ }
    break;
  }
  for (const a of document.querySelectorAll("header nav a")) {
    const p = a.getAttribute("href");
    const on = p === "/" ? path === "/" : path === p || path.startsWith(`${p}/`);
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  fn(signal, new URLSearchParams(location.search), ...args).catch((e) => {
    if (!signal.aborted) main.append(errorOf(e));
  });
  if (focus) main.focus();
}

function go(url) {
  if (url !== location.pathname + location.search + location.hash) history.pushState(null, "", url);
  render(true);
}

document.addEventListener("click", (e) => {
  const a = e.target.closest?.("a[href]");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  if ((a.target && a.target !== "_self") || a.hasAttribute("download") || a.origin !== location.origin) return;
  if (/^\/(api|ui)\//.test(a.pathname)) return;
  // An anchor on this page (the skip link): the browser's own handling.
  if (a.pathname === location.pathname && a.search === location.search && a.hash) return;
  e.preventDefault();
  go(a.pathname + a.search + a.hash);
});

addEventListener("popstate", () => {
  if (location.pathname + location.search !== shown) render(true);
});

// ---------- shared pieces ----------

function occupancy(x) {
  const lim = x.concurrency_limit, active = x.active_runs ?? 0;
  return h("span", { class: "occ" }, `${active} / ${lim ?? "no limit"}`,
    lim != null && h("meter", { min: 0, max: Math.max(lim, 1), value: active, "aria-label": "occupancy" }));
}

const status = (x) => (x.paused ? h("span", { class: "pill paused" }, "paused") : h("span", { class: "pill" }, "ready"));
const loadCells = (x) => [td(status(x)), td(occupancy(x)), num(x.queued_runs), td(waitWords(x.waiting))];

function queueRow(q, indent) {
  return h("tr", { class: indent ? "queue" : null, "data-queue": q.name },
    td(h("a", { href: `/runs?pool=${enc(q.pool)}&queue=${enc(q.name)}`, title: `Runs of queue ${q.name}` }, q.name)),
    td(`priority ${q.priority}`), ...loadCells(q));
}

function runsTable(items) {
  return table(["Run", "State", "Deployment", "Pool / queue", "Tags", "Created", "Ended", "Took"],
    items.map((r) => h("tr", { "data-run-id": r.id, "data-state": r.state },
      td(runLink(r.id)), td(badge(r.state)),
      td(r.deployment ?? h("span", { class: "muted" }, "job")),
      td(`${r.pool} / ${r.queue}`), td(tags(r.tags)),
      td(when(r.created_at)), td(when(r.ended_at)), td(took(r)))),
    { id: "runs" }, "No runs match.");
}

function bindingsTable(items) {
  const world = items.some((b) => b.world);
  return table(["Pool", "Plugin", world && "World", "Version", "Mode", "On error", "Order", "Config"].filter(Boolean),
    items.map((b) => h("tr", { "data-plugin": b.plugin, "data-mode": b.mode ?? "enforce" },
      td(b.pool ? h("a", { href: `/pools/${enc(b.pool)}` }, b.pool) : "router"),
      td(pluginLink(b.plugin)), world && td(dash(b.world)),
      td(b.version ?? b.pinned_version ?? "newest"),
      td(b.mode === "shadow" ? h("span", { class: "shadow" }, "shadow") : "enforce"),
      td(dash(b.on_error)), num(b.position ?? b.order),
      h("td", { class: "wrap" }, b.config === undefined ? "-" : h("code", {}, JSON.stringify(b.config))))),
    {}, "No bindings.");
}

function diff(ops) {
  const sign = { add: "+", remove: "-", replace: "~" };
  return h("pre", { class: "diff" }, ops.map((o) => {
    const known = Object.hasOwn(sign, o.op);
    const head = known ? `${sign[o.op]} ${o.path}` : `${o.op} ${o.path}${o.from != null ? ` from ${o.from}` : ""}`;
    const val = "value" in o && o.op !== "remove" ? ` = ${JSON.stringify(o.value)}` : "";
    return [h("span", { class: known ? o.op : "other" }, head + val), "\n"];
  }));
}

function decisionRow({ detail: d }) {
  const dec = d.decision && typeof d.decision === "object" ? d.decision : {};
  let what = dec.decision && dec.seconds != null ? `${dec.decision} (${dec.seconds} s)` : dec.decision;
  if (d.error) what = `error: ${d.error.kind ?? "unknown"}${d.on_error ? ` (${d.on_error})` : ""}`;
  else if (!what && Array.isArray(d.patch)) what = "patch";
  else if (!what && d.world === "router" && d.decision) what = `route → ${[dec.pool, dec.queue].filter(Boolean).join(" / ") || "unchanged"}`;
  const why = dec.reason ?? dec.message ?? d.error?.message ?? (dec.add_tags?.length ? `tags +${dec.add_tags.join(" +")}` : null);
  // A shadow binding's decision changed nothing; say so, and whether it
  // agreed with what was enforced.
  const shadow = d.mode === "shadow" && h("span", { class: d.agrees === false ? "shadow differs" : "shadow" },
    d.agrees === false ? "shadow · differs" : d.agrees === true ? "shadow · agrees" : "shadow");
  return h("tr", { "data-plugin": d.plugin, "data-mode": d.mode ?? "enforce",
    "data-agrees": d.agrees == null ? null : String(d.agrees) },
    td(pluginLink(d.plugin, d.version != null ? `${d.plugin}@${d.version}` : d.plugin), shadow ? [" ", shadow] : null),
    td(digest(d.digest)), td(dash(d.world)), td(dash(what)), h("td", { class: "wrap" }, dash(why)),
    num(ms(d.elapsed_ms)), td(Array.isArray(d.patch) && d.patch.length ? diff(d.patch) : "-"));
}

// ---------- views ----------

async function overview(signal) {
  title("Overview");
  const sumErr = h("div"), sum = h("div"), poolErr = h("div"), pools = h("div");
  main.append(h("h1", {}, "Overview"), sumErr, sum, h("h2", {}, "Pools"), poolErr, pools);
  await Promise.all([
    poll(signal, 5000, sumErr, async () => swap(sum, summary(await api("/api/v1/summary", { signal })))),
    poll(signal, 5000, poolErr, async () => {
      const { items } = await api("/api/v1/pools", { signal });
      const queues = await Promise.all(items.map((p) =>
        soft(api(`/api/v1/pools/${enc(p.name)}/queues`, { signal }))));
      swap(pools, items.length ? table(["Pool / queue", "Type", "Status", "Occupancy", "Queued", "Waiting"],
        items.map((p, i) => [
          h("tr", { "data-pool": p.name },
            td(h("a", { href: `/pools/${enc(p.name)}` }, p.name)), td(p.type), ...loadCells(p)),
          queues[i] instanceof Error
            ? h("tr", { class: "queue" }, h("td", { colspan: 6 }, errorOf(queues[i])))
            : queues[i].items.map((x) => queueRow(x, true)),
        ]),
        { id: "pools" }) : h("p", { class: "empty" }, "No pools yet."));
    }),
  ]);
}

function summary(s) {
  const by = s.runs_by_state ?? {};
  const states = [...STATES, ...Object.keys(by).filter((k) => !STATES.includes(k))];
  const late = by.Late ?? 0;
  const mins = (s.throughput_window_seconds ?? 0) / 60;
  return [
    h("a", { id: "late", class: late ? "late" : "late none", href: "/runs?state=Late" },
      h("strong", {}, String(late)), late === 1 ? " late run" : " late runs"),
    h("ul", { id: "tiles", class: "tiles" }, states.map((st) => h("li", {},
      h("a", { href: `/runs?state=${enc(st)}`, "data-state": st, class: `tile state-${st.toLowerCase()}` },
        h("span", { class: "n" }, String(by[st] ?? 0)), h("span", {}, st))))),
    h("p", { id: "throughput" }, s.ended_per_minute == null
      ? "Ended runs per minute: measuring…"
      : `${nf.format(s.ended_per_minute)} runs ended per minute over the last ${nf.format(mins)} minute${mins === 1 ? "" : "s"}`),
  ];
}

const FILTERS = ["pool", "queue", "deployment", "tag"];
const qs = (p) => { const s = p.toString().replace(/%2C/gi, ","); return s ? `?${s}` : ""; };

async function runsView(signal, q) {
  title("Runs");
  const states = q.getAll("state").flatMap((s) => s.split(",")).filter(Boolean);
  const form = h("form", { id: "filters", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const fd = new FormData(form), p = new URLSearchParams();
    const st = fd.getAll("state");
    if (st.length) p.set("state", st.join(","));
    for (const k of FILTERS) { const v = String(fd.get(k) ?? "").trim(); if (v) p.set(k, v); }
    go(`/runs${qs(p)}`);
  } },
  h("fieldset", {}, h("legend", {}, "State"), STATES.map((s) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "state", value: s, checked: states.includes(s) }), s))),
  FILTERS.map((k) => h("p", { class: "field" },
    h("label", { for: `f-${k}` }, k[0].toUpperCase() + k.slice(1)),
    h("input", { id: `f-${k}`, name: k, type: "text", value: q.get(k) ?? "", autocomplete: "off" }))),
  h("p", { class: "actions" }, h("button", { type: "submit" }, "Filter"), h("a", { href: "/runs" }, "Clear")));

  const live = h("span", { id: "live", role: "status" }, "reconnecting…");
  const box = h("div"), list = h("div"), pager = h("nav", { class: "pager", "aria-label": "Pages" });
  main.append(h("div", { class: "titlebar" }, h("h1", {}, "Runs"), live), form, box, list, pager);

  const base = new URLSearchParams();
  if (states.length) base.set("state", states.join(","));
  for (const k of FILTERS) if (q.get(k)) base.set(k, q.get(k));
  const query = new URLSearchParams(base);
  query.set("limit", "50");
  if (q.get("cursor")) query.set("cursor", q.get("cursor"));

  const load = async () => {
    const r = await api(`/api/v1/runs${qs(query)}`, { signal });
    swap(list, runsTable(r.items));
    const older = new URLSearchParams(base);
    if (r.next_cursor) older.set("cursor", r.next_cursor);
    swap(pager,
      q.get("cursor") && h("a", { id: "newest", href: `/runs${qs(base)}` }, "Newest"),
      r.next_cursor && h("a", { id: "older", href: `/runs${qs(older)}` }, "Older →"));
    box.replaceChildren();
  };
  let timer = 0, opened = 0;
  signal.addEventListener("abort", () => clearTimeout(timer));
  const refresh = () => {
    clearTimeout(timer);
    timer = setTimeout(() => load().catch((e) => fail(box, e)), 300);
  };
  events(signal, refresh, (open) => {
    live.textContent = open ? "live" : "reconnecting…";
    live.className = open ? "on" : "";
    if (open && opened++) refresh(); // events may have been missed while away
  }).catch(() => {});
  await load().catch((e) => fail(box, e));
}

async function runView(signal, _q, id) {
  title(`Run ${short(id)}`);
  const box = h("div"), head = h("div", { class: "titlebar" }), body = h("div");
  const cancelErr = h("div", { id: "cancel-error" }); // apart from box, which each poll clears
  const jobBox = h("section", {}, h("h2", {}, "Job"));
  const logs = h("pre", { id: "logs", tabindex: 0, "aria-label": "Logs" });
  const note = h("p", { id: "logs-status", class: "muted" }, "Waiting for output…");
  main.append(h("h1", {}, "Run ", h("code", {}, id)), head, cancelErr, box, body, jobBox,
    h("section", {}, h("h2", {}, "Logs"), note, logs));
  let cur = null, started = false, drawn = "";

  const draw = () => {
    const r = cur, w = r.waiting, done = TERMINAL.has(r.state);
    const ds = (r.history ?? []).filter((e) => e.detail?.plugin);
    swap(head, badge(r.state, { id: "run-state" }),
      h("p", { id: "state-message" }, r.state_message),
      me?.may?.cancel_runs && !done && h("button", { id: "cancel", type: "button", class: "danger", onclick: cancel }, "Cancel run"));
    swap(body,
      facts([
        ["Pool", h("a", { href: `/pools/${enc(r.pool)}` }, r.pool)],
        ["Queue", h("a", { href: `/runs?pool=${enc(r.pool)}&queue=${enc(r.queue)}` }, r.queue)],
        ["Deployment", r.deployment ? h("a", { href: `/runs?deployment=${enc(r.deployment)}` }, r.deployment) : "none (a raw job)"],
        ["Attempt", r.attempt], ["Exit code", r.exit_code], ["Tags", tags(r.tags)],
        r.parent_run_id && ["Parent run", runLink(r.parent_run_id)],
        ["Scheduled", when(r.scheduled_at)], ["Created", when(r.created_at)],
        ["Started", when(r.started_at)], ["Ended", when(r.ended_at)], r.ended_at && ["Took", took(r)],
      ], { id: "facts" }),
      w && h("section", { id: "waiting" }, h("h2", {}, "Why it waits"),
        h("p", { id: "waiting-summary" }, w.summary),
        w.position && h("p", { id: "waiting-position" }, `${w.position.at_least ? "At least " : ""}${ord(w.position.in_queue)} in its queue, ${w.position.at_least ? "at least " : ""}${ord(w.position.in_pool)} in its pool's release order`),
        w.holds?.length ? h("ul", { id: "holds" }, w.holds.map((x) => h("li", { "data-kind": x.kind }, x.text))) : null),
      h("h2", {}, "Parameters"), h("pre", { id: "parameters" }, pretty(r.parameters)),
      h("h2", {}, "Job variables"), h("pre", { id: "job-variables" }, pretty(r.job_variables)),
      h("section", {}, h("h2", {}, "Timeline"), h("ol", { id: "timeline", class: "timeline" },
        (r.history ?? []).map((e) => h("li", { "data-state": e.state }, when(e.at), badge(e.state),
          h("span", { class: "msg" }, e.message), e.cause && h("span", { class: "cause" }, `by ${e.cause}`))))),
      h("section", {}, h("h2", {}, "Plugin decisions"),
        table(["Plugin", "Digest", "World", "Decision", "Reason", "Took", "Patch"], ds.map(decisionRow),
          { id: "decisions" }, "No plugin decided on this run.")));
  };

  const load = async () => {
    cur = await api(`/api/v1/runs/${enc(id)}`, { signal });
    const key = JSON.stringify([cur, me?.may?.cancel_runs]);
    if (key !== drawn) { drawn = key; draw(); } // unchanged: keep text selections
    if (!started) {
      started = true;
      showJob(cur, jobBox, signal);
      follow(id, logs, note, signal, () => TERMINAL.has(cur.state));
    }
    return !TERMINAL.has(cur.state);
  };

  async function cancel(e) {
    const btn = e.currentTarget;
    btn.disabled = true;
    try {
      await api(`/api/v1/runs/${enc(id)}/cancel`, { method: "POST", signal });
      cancelErr.replaceChildren();
      await load();
    } catch (err) {
      fail(cancelErr, err);
    } finally {
      btn.disabled = false;
    }
  }

  await poll(signal, 2000, box, load);
}

async function showJob(r, box, signal) {
  try {
    if (r.deployment) {
      const x = await api(`/api/v1/deployments/${enc(r.deployment)}/render`,
        { method: "POST", body: { job_variables: r.job_variables ?? {}, parameters: r.parameters ?? {} }, signal });
      box.append(h("p", { class: "muted" }, "A preview: the job its deployment renders now, from the template, the job variables and the pool's mutators as bound now (the run id is left blank). What the mutators did to this run when it was released is in the decisions above."),
        h("pre", { id: "job", tabindex: 0 }, pretty(x.job_configuration)));
    } else {
      box.append(h("pre", { id: "job", tabindex: 0 }, pretty(r.job)));
    }
  } catch (e) {
    if (!signal.aborted) box.append(errorOf(e));
  }
}

// Follows a run's output; a run not started yet answers empty at once, so
// follow again every 2 s until an attempt began after the run was terminal.
async function follow(id, pre, note, signal, terminal) {
  let have = ""; // what the <pre> shows
  while (!signal.aborted) {
    const wasDone = terminal();
    let err = null;
    try {
      const res = await api(`/api/v1/runs/${enc(id)}/logs?follow=true`, { signal, raw: true });
      if (!wasDone) note.textContent = "Following the output…";
      const reader = res.body?.getReader(), dec = new TextDecoder();
      let got = ""; // each request sends the output from its start
      while (reader) {
        const { value, done } = await reader.read();
        const s = done ? dec.decode() : dec.decode(value, { stream: true });
        if (s) {
          got += s;
          if (got.length <= have.length && have.startsWith(got)) continue; // shown already
          const atEnd = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
          if (got.startsWith(have)) pre.append(got.slice(have.length));
          else pre.textContent = got;
          have = got;
          if (atEnd) pre.scrollTop = pre.scrollHeight;
        }
        if (done) break;
      }
    } catch (e) {
      if (signal.aborted) return;
      err = e;
      note.textContent = `Logs: ${e.message}`;
      if (e.status === 404) return;
    }
    if (wasDone) {
      if (!err) note.textContent = have ? "The run has ended; this is all of its output." : "The run ended without output.";
      return;
    }
    if (!err && !have) note.textContent = "No output yet; the run has not started.";
    await sleep(2000, signal);
  }
}

async function pluginsView(signal) {
  title("Plugins");
  const box = h("div"), list = h("div");
  main.append(h("h1", {}, "Plugins"), box, list);
  try {
    const { items } = await api("/api/v1/plugins", { signal });
    if (!items.length) list.append(h("p", { class: "empty" }, "No plugins uploaded yet."));
    else list.append(h("ul", { class: "toc" }, items.map((p) => h("li", {}, h("a", { href: `#plugin-${enc(p.name)}` }, p.name)))));
    await Promise.all(items.map((p) => {
      const sec = h("section", { id: `plugin-${p.name}`, class: "plugin" }, h("h2", {}, p.name));
      list.append(sec);
      return pluginSection(p, sec, signal);
    }));
  } catch (e) {
    fail(box, e);
  }
  try {
    if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  } catch { /* a bad anchor */ }
}

async function pluginSection(p, sec, signal) {
  const base = `/api/v1/plugins/${enc(p.name)}`;
  const [d, x] = await Promise.all([soft(api(base, { signal })), soft(api(`${base}/decisions?limit=50`, { signal }))]);
  add(sec, [part(d, (d) => [
    h("p", { class: "meta" }, `${d.world ?? p.world ?? "?"} · newest version ${d.newest_version ?? p.newest_version ?? p.version ?? "?"}`),
    d.description?.summary && h("p", {}, d.description.summary),
    d.description_error && h("p", { class: "warn" }, `It could not describe itself: ${d.description_error}`),
    h("h3", {}, "Versions"),
    table(["Version", "Digest", "World", "WIT", "Created"], [...(d.versions ?? [])].reverse().map((v) =>
      h("tr", { "data-version": v.version }, num(v.version), td(digest(v.digest)), td(dash(v.world)),
        td(dash(v.wit_version)), td(when(v.created_at))))),
    h("h3", {}, "Bindings"), bindingsTable(d.bindings ?? []),
  ]),
  h("h3", {}, "Recent decisions"),
  part(x, (x) => [
    h("p", { class: "outcomes" }, `Outcomes: ${count(x.outcomes) || "none"}`,
      x.scanned != null ? ` (among the last ${x.scanned} history records)` : ""),
    count(x.shadow_outcomes) && h("p", { class: "shadow-outcomes" },
      `In shadow: ${count(x.shadow_outcomes)}; disagreed with what was enforced: ${x.shadow_disagreements ?? 0}`),
    count(x.failures_by_kind) && h("p", { class: "failures" }, `Failures: ${count(x.failures_by_kind)}`),
    table(["Time", "Run", "Version", "Outcome", "Took"], (x.items ?? []).slice(0, 10).map((i) =>
      h("tr", { "data-outcome": i.outcome, "data-mode": i.mode ?? "enforce" }, td(when(i.at)), td(runLink(i.run_id)), num(i.version),
        h("td", { title: i.message || null }, i.outcome, i.error_kind ? `: ${i.error_kind}` : "",
          i.mode === "shadow" ? ` (shadow${i.agrees === false ? ", differs" : ""})` : ""), num(ms(i.elapsed_ms)))),
    {}, "No decisions recorded."),
  ]),
  me?.may?.manage_plugins && part(d, (d) => replayForm(p.name, d.versions ?? [], signal)),
  ]);
}

// Replay (issue #16): another stored version judges the plugin's recorded
// decisions again, offline; the report lists what it would decide otherwise.
function replayForm(name, versions, signal) {
  const id = (k) => `replay-${name}-${k}`;
  const out = h("div", { class: "replay-report", "aria-live": "polite" });
  const form = h("form", { class: "replay", onsubmit: async (e) => {
    e.preventDefault();
    const fd = new FormData(form), btn = form.querySelector("button");
    const q = new URLSearchParams({ version: String(fd.get("version")), limit: String(fd.get("limit") || 100) });
    const since = String(fd.get("since") ?? "").trim();
    if (since) q.set("since", since);
    btn.disabled = true;
    out.replaceChildren(h("p", { class: "muted" }, "Replaying…"));
    try {
      const r = await api(`/api/v1/plugins/${enc(name)}/replay?${q}`, { method: "POST", signal });
      out.replaceChildren();
      add(out, replayReport(r));
    } catch (err) {
      fail(out, err);
    } finally {
      btn.disabled = false;
    }
  } },
  h("p", { class: "field" }, h("label", { for: id("version") }, "Version"),
    h("select", { id: id("version"), name: "version" },
      [...versions].reverse().map((v) => h("option", { value: v.version }, `${v.version} (${String(v.digest).replace(/^sha256:/, "").slice(0, 12)})`)))),
  h("p", { class: "field" }, h("label", { for: id("limit") }, "Newest decisions"),
    h("input", { id: id("limit"), name: "limit", type: "number", min: 1, max: 10000, value: 100 })),
  h("p", { class: "field" }, h("label", { for: id("since") }, "Since (90m, 12h, 7d or a time)"),
    h("input", { id: id("since"), name: "since", type: "text", autocomplete: "off" })),
  h("p", { class: "actions" }, h("button", { type: "submit" }, "Replay")));
  return [h("h3", {}, "Replay"),
    h("p", { class: "muted" }, "Judge the decisions this plugin made again with another version, on what each decision saw. Nothing changes for any run."),
    form, out];
}

function replayReport(r) {
  const s = r.summary ?? {};
  const words = [["would_reject", "would reject"], ["would_admit", "would admit"], ["would_defer", "would defer"],
    ["reasons_changed", "reasons changed"], ["routes_changed", "routes changed"], ["jobs_changed", "jobs changed"],
    ["errors", "errors"], ["not_replayable", "not replayable"], ["live_stats", "stats read live"]]
    .filter(([k]) => s[k] > 0).map(([k, w]) => `${w} ${s[k]}`);
  const changed = (r.runs ?? []).filter((l) => !l.same);
  return [
    h("p", { class: "replay-summary" }, `${r.candidate?.source ?? "?"}: judged ${s.judged ?? 0}, same ${s.same ?? 0}, different ${s.different ?? 0}`,
      words.length ? `: ${words.join(", ")}` : "", r.truncated ? " (cut short: the replay's time ran out)" : ""),
    table(["Run", "Decided", "Was", "Now", "Job difference"], changed.slice(0, 100).map((l) =>
      h("tr", { "data-run": l.run_id }, td(runLink(l.run_id)), td(when(l.decided_at)), td(`v${l.recorded_version}`),
        h("td", { class: "wrap" }, l.not_replayable ? `not replayable: ${l.not_replayable}` : dash(l.change)),
        td(Array.isArray(l.job_diff) && l.job_diff.length ? diff(l.job_diff) : "-"))),
    {}, "Every decision the same."),
    changed.length > 100 && h("p", { class: "muted" }, `The first 100 of ${changed.length} differences; the API has them all.`),
  ];
}

async function poolView(signal, _q, name) {
  title(`Pool ${name}`);
  const box = h("div"), body = h("div");
  main.append(h("h1", {}, "Pool ", h("span", { class: "name" }, name)), box, body);
  const base = `/api/v1/pools/${enc(name)}`;
  await poll(signal, 5000, box, async () => {
    const [p, qu, bs, rs] = await Promise.all([api(base, { signal }), soft(api(`${base}/queues`, { signal })),
      soft(api(`${base}/bindings`, { signal })), soft(api(`/api/v1/runs?pool=${enc(name)}&limit=20`, { signal }))]);
    swap(body,
      p.description && h("p", { class: "description" }, p.description),
      facts([["Type", p.type], ["Status", status(p)], ["Occupancy", occupancy(p)],
        ["Queued", p.queued_runs], ["Waiting", waitWords(p.waiting)], ["Created", when(p.created_at)]], { id: "pool-facts" }),
      h("h2", {}, "Queues"),
      part(qu, (q) => table(["Queue", "Priority", "Status", "Occupancy", "Queued", "Waiting"],
        q.items.map((x) => queueRow(x, false)), { id: "queues" }, "No queues.")),
      h("h2", {}, "Bindings"), part(bs, (b) => bindingsTable(b.items)),
      h("h2", {}, "Newest runs"), part(rs, (r) => runsTable(r.items)),
      h("p", {}, h("a", { id: "all-runs", href: `/runs?pool=${enc(name)}` }, "all runs of this pool")));
  });
}

async function notFound() {
  title("Not found");
  main.append(h("h1", {}, "Not found"),
    h("p", {}, "Nothing lives at ", h("code", {}, location.pathname), "."),
    h("p", {}, h("a", { href: "/" }, "Go to the overview")));
}

whoami().then(() => render(false));
