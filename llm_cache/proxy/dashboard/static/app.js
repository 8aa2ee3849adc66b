// llm-cache dashboard: plain JS, no dependencies, everything from the proxy itself.
"use strict";

const REFRESH_MS = 5000;
const WINDOW = 6; // samples in the hit-rate line's trailing window
const PAGE = 15; // entries shown before "Show more"
const STATUS_ORDER = ["hit", "semantic_hit", "miss", "coalesced", "partial", "bypass", "error"];
const STATUS_LABEL = {
  hit: "Hit", semantic_hit: "Semantic hit", miss: "Miss", coalesced: "Coalesced",
  partial: "Partial", bypass: "Bypass", error: "Error",
};
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

// Build DOM without innerHTML (the page's CSP forbids inline styles and scripts).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const child of children) el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return el;
}

// -- formatting ---------------------------------------------------------------------------
const nf = new Intl.NumberFormat("en-US");
function fmtInt(n) { return n === null || n === undefined ? "–" : nf.format(Math.round(n)); }
function fmtCompact(n) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) < 10000) return nf.format(Math.round(n));
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
}
function fmtUSD(x) {
  if (x === null || x === undefined) return "–";
  if (x === 0) return "$0";
  if (x < 0.0001) return "<$0.0001";
  if (x < 0.01) return "$" + x.toFixed(4);
  if (x < 100) return "$" + x.toFixed(2);
  return "$" + nf.format(Math.round(x));
}
function fmtSeconds(sec) {
  if (sec === null || sec === undefined) return "–";
  if (sec < 1) return Math.round(sec * 1000) + " ms";
  if (sec < 60) return sec.toFixed(1) + " s";
  if (sec < 3600) return (sec / 60).toFixed(1) + " min";
  if (sec < 86400) return (sec / 3600).toFixed(1) + " h";
  return (sec / 86400).toFixed(1) + " days";
}
function fmtBytes(b) {
  if (b === null || b === undefined) return "n/a";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b : b.toFixed(1)) + " " + units[i];
}
function fmtPct(p) { return p === null || p === undefined ? "–" : p.toFixed(1) + "%"; }
function fmtAgo(epoch, now) {
  const d = Math.max(0, (now || Date.now() / 1000) - epoch);
  if (d < 60) return Math.round(d) + "s ago";
  if (d < 3600) return Math.round(d / 60) + "m ago";
  if (d < 86400) return Math.round(d / 3600) + "h ago";
  return Math.round(d / 86400) + "d ago";
}
function clock(epoch, withSeconds) {
  const d = new Date(epoch * 1000);
  const opts = { hour: "2-digit", minute: "2-digit" };
  if (withSeconds) opts.second = "2-digit";
  return d.toLocaleTimeString("en-GB", opts);
}

// -- API ----------------------------------------------------------------------------------
async function api(path, options) {
  const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  if (response.status === 401) { window.location.reload(); throw new Error("signed out"); }
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && body.error.message) || response.statusText);
  return body;
}

function toast(message) {
  const el = $("toast");
  el.textContent = message;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { el.hidden = true; }, 2600);
}

// -- summary --------------------------------------------------------------------------------
let lastSummary = null;

async function refresh() {
  try {
    const data = await api("/dashboard/api/summary");
    lastSummary = data;
    render(data);
  } catch (err) {
    $("updated").textContent = "update failed: " + err.message;
  }
}

function render(d) {
  const health = d.health || {};
  const pill = $("health");
  pill.textContent = health.status === "healthy" ? "healthy" : (health.status || "unknown");
  pill.className = "pill " + (health.status === "healthy" ? "ok" : "bad");
  pill.title = health.error || "";
  $("mode").textContent = "mode " + d.mode;
  $("backend").textContent = (d.storage && d.storage.backend) || "";
  $("workers").textContent = d.workers;
  $("updated").textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString("en-GB");
  document.querySelector(".logout").hidden = !d.auth_required;

  const byStatus = d.requests_by_status || {};
  const total = Object.values(byStatus).reduce((a, b) => a + b, 0);
  const hits = (byStatus.hit || 0) + (byStatus.semantic_hit || 0);
  const lookups = hits + (byStatus.miss || 0) + (byStatus.coalesced || 0);
  $("kpi-hit-rate").textContent = fmtPct(d.hit_rate);
  $("kpi-hit-sub").textContent = lookups ? `${fmtInt(hits)} hits of ${fmtInt(lookups)} lookups` : "no lookups yet";
  $("kpi-requests").textContent = fmtCompact(total);
  $("kpi-requests-sub").textContent = (byStatus.error ? `${fmtInt(byStatus.error)} errors · ` : "") + "since start";
  $("kpi-cost").textContent = fmtUSD(d.cost_saved_usd);
  $("kpi-cost-sub").textContent = d.cost_note ? "some models unpriced" : "at list prices";
  $("kpi-cost-sub").title = d.cost_note || "";
  const tokens = d.tokens_saved || { input: 0, output: 0 };
  $("kpi-tokens").textContent = fmtCompact(tokens.input + tokens.output);
  $("kpi-tokens-sub").textContent = `${fmtCompact(tokens.input)} in · ${fmtCompact(tokens.output)} out`;
  $("kpi-time").textContent = fmtSeconds(d.time_saved_seconds);
  $("kpi-time-sub").textContent = "upstream time avoided";
  const st = d.storage || {};
  $("kpi-storage").textContent = fmtInt(st.entries);
  $("kpi-storage-sub").textContent = `of ${fmtInt(st.max_size)} entries · ${fmtBytes(st.bytes)}`;

  renderTimeline(d.timeline || [], d.timeline_interval);
  renderStatuses(byStatus, total);
  renderModels(d.by_model || [], d.cost_note);
  renderStorage(d);
}

function renderTimeline(points, interval) {
  const box = $("timeline");
  const W = 640, H = 220, L = 40, R = 12, T = 12, B = 26;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  for (const p of [0, 25, 50, 75, 100]) {
    const y = T + (H - T - B) * (1 - p / 100);
    svg.append(s("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid-line" }));
    svg.append(s("text", { x: L - 6, y: y + 4, "text-anchor": "end", class: "axis" }, p + "%"));
  }
  const pts = points.slice(-120);
  $("timeline-note").textContent = interval
    ? `rolling ${fmtSeconds(interval * WINDOW)} · a point every ${fmtSeconds(interval)}` : "";
  if (pts.length === 0 || pts.every((p) => p.requests === 0)) {
    svg.append(s("text", { x: (L + W - R) / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
      "No requests yet: the line appears as requests come in"));
    box.replaceChildren(svg);
    return;
  }
  const maxReq = Math.max(1, ...pts.map((p) => p.requests));
  const step = (W - L - R) / Math.max(1, pts.length);
  const ploth = H - T - B;
  pts.forEach((p, i) => {
    const bh = (p.requests / maxReq) * ploth * 0.45;
    const bar = s("rect", { x: L + i * step + step * 0.15, y: T + ploth - bh, width: Math.max(1, step * 0.7), height: bh, class: "vol" });
    bar.append(s("title", {}, `${clock(p.t)}: ${p.requests} requests, hit rate ${fmtPct(p.hit_rate)}`));
    svg.append(bar);
  });
  // The line is the hit rate over a trailing window of WINDOW samples: per-sample rates of
  // bursty traffic jump between 0 and 100 %, which says little.
  const xy = [];
  pts.forEach((p, i) => {
    const win = pts.slice(Math.max(0, i - WINDOW + 1), i + 1);
    const hits = win.reduce((a, q) => a + q.hits, 0);
    const lookups = win.reduce((a, q) => a + q.lookups, 0);
    if (!lookups) return;
    xy.push([L + i * step + step / 2, T + ploth * (1 - hits / lookups)]);
  });
  if (xy.length) {
    const line = xy.map(([x, y], i) => (i ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1)).join(" ");
    const area = line + ` L${xy[xy.length - 1][0].toFixed(1)} ${T + ploth} L${xy[0][0].toFixed(1)} ${T + ploth} Z`;
    svg.append(s("path", { d: area, class: "area" }));
    svg.append(s("path", { d: line, class: "rate" }));
    if (xy.length < 40) for (const [x, y] of xy) svg.append(s("circle", { cx: x, cy: y, r: 3, class: "dot" }));
  }
  const ticks = Math.min(6, pts.length);
  const span = pts[pts.length - 1].t - pts[0].t;
  for (let k = 0; k < ticks; k++) {
    const i = Math.round((k * (pts.length - 1)) / Math.max(1, ticks - 1));
    const anchor = k === 0 ? "start" : k === ticks - 1 ? "end" : "middle";
    const x = k === 0 ? L : k === ticks - 1 ? W - R : L + i * step + step / 2;
    svg.append(s("text", { x, y: H - 8, "text-anchor": anchor, class: "axis" }, clock(pts[i].t, span < 600)));
  }
  box.replaceChildren(svg);
}

function renderStatuses(byStatus, total) {
  const rows = [];
  const names = STATUS_ORDER.filter((k) => byStatus[k]).concat(Object.keys(byStatus).filter((k) => !STATUS_ORDER.includes(k)));
  for (const name of names) {
    const n = byStatus[name];
    const fill = h("div", { class: "bar-fill s-" + (STATUS_LABEL[name] ? name : "other") });
    fill.style.width = (100 * n / Math.max(1, total)).toFixed(1) + "%";
    rows.push(h("div", { class: "bar-row", "data-status": name },
      h("div", { class: "bar-label" }, h("span", { class: "dotc s-" + (STATUS_LABEL[name] ? name : "other") }), STATUS_LABEL[name] || name),
      h("div", { class: "bar-track" }, fill),
      h("div", { class: "bar-value" }, fmtInt(n))));
  }
  if (!rows.length) {
    rows.push(h("p", { class: "muted", text: "No requests yet." }));
  } else {
    // Where the answers came from: the cache, the upstream, or nowhere (errors).
    const fromCache = (byStatus.hit || 0) + (byStatus.semantic_hit || 0);
    const failed = byStatus.error || 0;
    const upstream = Math.max(0, total - fromCache - failed);
    const split = h("div", { class: "split" });
    for (const [cls, n] of [["s-hit", fromCache], ["s-miss", upstream], ["s-error", failed]]) {
      if (!n) continue;
      const part = h("div", { class: cls, title: String(n) });
      part.style.width = (100 * n / total).toFixed(2) + "%";
      split.append(part);
    }
    rows.push(h("div", { class: "split-box" },
      h("div", { class: "split-title" }, "Where answers came from"),
      split,
      h("div", { class: "split-legend" },
        h("span", {}, h("span", { class: "dotc s-hit" }), ` cache ${fmtInt(fromCache)}`),
        h("span", {}, h("span", { class: "dotc s-miss" }), ` upstream ${fmtInt(upstream)}`),
        h("span", {}, h("span", { class: "dotc s-error" }), ` errors ${fmtInt(failed)}`))));
  }
  $("statuses").replaceChildren(...rows);
}

function renderModels(models, note) {
  $("cost-note").textContent = note || "";
  const body = $("models").querySelector("tbody");
  if (!models.length) {
    body.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: 6, text: "No model seen yet." })));
    return;
  }
  body.replaceChildren(...models.slice(0, 8).map((m) => {
    const lookups = m.hits + m.misses;
    const rate = lookups ? (100 * m.hits) / lookups : 0;
    const fill = h("div", { class: "rate-fill" });
    fill.style.width = rate.toFixed(1) + "%";
    const tok = m.tokens_saved.input + m.tokens_saved.output;
    const cost = m.price_known ? h("span", {}, fmtUSD(m.cost_saved_usd))
      : h("span", { class: "unpriced", title: "No list price known for this model: counted as $0" }, "unpriced");
    return h("tr", {},
      h("td", {}, h("div", { class: "model-name" }, m.model), h("div", { class: "provider" }, m.provider)),
      h("td", { class: "num" }, fmtInt(m.hits)),
      h("td", { class: "num" }, fmtInt(m.misses)),
      h("td", {}, h("div", { class: "rate-cell" }, h("div", { class: "rate-track" }, fill), h("span", { class: "rate-text" }, lookups ? rate.toFixed(0) + "%" : "–"))),
      h("td", { class: "num" }, fmtCompact(tok)),
      h("td", { class: "num" }, cost));
  }));
}

function renderStorage(d) {
  const st = d.storage || {}, health = d.health || {};
  const used = st.max_size ? Math.min(100, (100 * (st.entries || 0)) / st.max_size) : 0;
  const meter = h("div", { class: "meter" }, h("div", {}));
  meter.firstChild.style.width = used.toFixed(1) + "%";
  const facts = [
    ["Health", h("span", { class: health.status === "healthy" ? "ok-text" : "bad-text" }, health.status || "unknown")],
    health.error ? ["Error", health.error] : null,
    ["Backend", st.backend || "–"],
    ["Entries", h("div", {}, `${fmtInt(st.entries)} of ${fmtInt(st.max_size)} (${used.toFixed(0)}%)`, meter)],
    ["Size", fmtBytes(st.bytes)],
    ["Stored hits / misses", `${fmtInt(st.hits)} / ${fmtInt(st.misses)} (${fmtPct(st.hit_rate)})`],
    ["Mode", d.mode],
    ["Figures", d.workers + ", since " + fmtSeconds(d.uptime_seconds) + " ago"],
    ["Version", d.version],
  ].filter(Boolean);
  $("storage").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// -- entries --------------------------------------------------------------------------------
let searchTimer = null;
let entryLimit = PAGE;

async function loadEntries() {
  const q = $("search").value.trim();
  try {
    const data = await api(`/dashboard/api/entries?limit=${entryLimit}&q=` + encodeURIComponent(q));
    renderEntries(data, q);
  } catch (err) {
    $("entries-note").textContent = "could not list entries: " + err.message;
  }
}

function renderEntries(data, q) {
  const body = $("entries").querySelector("tbody");
  const now = Date.now() / 1000;
  if (!data.entries.length) {
    body.replaceChildren(h("tr", { class: "empty" }, h("td", { colspan: 7, text: q ? `No entry matches “${q}”.` : "No entries yet." })));
  } else {
    body.replaceChildren(...data.entries.map((e) => {
      const tokens = e.usage ? (e.usage.input || 0) + (e.usage.output || 0) : null;
      return h("tr", { "data-key": e.key, tabindex: 0, onclick: () => openEntry(e.key), onkeydown: (ev) => { if (ev.key === "Enter") openEntry(e.key); } },
        h("td", { class: "when", title: new Date(e.created * 1000).toLocaleString() }, fmtAgo(e.created, now)),
        h("td", {}, h("span", { class: "model-name" }, e.model || "–"), e.stream ? h("span", { class: "badge" }, "stream") : null),
        h("td", { class: "provider" }, e.endpoint),
        h("td", { class: "text", title: e.request_preview }, e.request_preview || "–"),
        h("td", { class: "text", title: e.answer_preview }, e.answer_preview || "–"),
        h("td", { class: "num" }, tokens === null ? "–" : fmtInt(tokens)),
        h("td", { class: "num" }, fmtBytes(e.size)));
    }));
  }
  const where = data.source === "storage" ? "from the storage" : "seen by this proxy process";
  $("entries-note").textContent = `${fmtInt(data.entries.length)} shown of ${fmtInt(data.matched)} matching (${where}). Click one to see its request and answer.`;
  $("more").hidden = data.entries.length >= data.matched;
}

let openKey = null;

async function openEntry(key) {
  let e;
  try {
    e = await api("/dashboard/api/entry?key=" + encodeURIComponent(key));
  } catch (err) {
    toast("Could not open the entry: " + err.message);
    loadEntries();
    return;
  }
  openKey = key;
  const m = e.metadata || {};
  $("drawer-title").textContent = `${m.model || "entry"} · ${m.endpoint || ""}`;
  $("drawer-key").textContent = key;
  const usage = m.usage ? `${fmtInt(m.usage.input)} in · ${fmtInt(m.usage.output)} out` : "–";
  const facts = [
    ["Provider", m.provider], ["Stored", new Date(m.created * 1000).toLocaleString()],
    ["Status", String(e.response.status) + (m.stream ? " (stream)" : "")], ["Usage", usage],
    ["Upstream time", fmtSeconds(m.upstream_duration)], ["Size", fmtBytes(m.size)],
  ];
  $("drawer-meta").replaceChildren(...facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v || "–")]));
  $("drawer-request").textContent = JSON.stringify(e.request, null, 2);
  $("drawer-answer-text").textContent = e.response.text || "(no text in this answer)";
  const raw = Object.assign({}, e.response);
  delete raw.text;
  $("drawer-answer").textContent = JSON.stringify(raw, null, 2);
  const del = $("delete");
  del.classList.remove("confirm");
  del.textContent = "Delete";
  $("drawer").hidden = false;
}

function closeDrawer() { $("drawer").hidden = true; openKey = null; }

async function deleteOpen() {
  const del = $("delete");
  if (!del.classList.contains("confirm")) {
    del.classList.add("confirm");
    del.textContent = "Confirm delete";
    return;
  }
  try {
    await api("/dashboard/api/entry?key=" + encodeURIComponent(openKey), { method: "DELETE" });
    toast("Entry deleted");
    closeDrawer();
  } catch (err) {
    toast("Delete failed: " + err.message);
  }
  loadEntries();
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    entryLimit = PAGE;
    searchTimer = setTimeout(loadEntries, 250);
  });
  $("more").addEventListener("click", () => { entryLimit += 50; loadEntries(); });
  $("drawer-close").addEventListener("click", closeDrawer);
  $("drawer-close-area").addEventListener("click", closeDrawer);
  $("delete").addEventListener("click", deleteOpen);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDrawer(); });
  refresh();
  loadEntries();
  setInterval(refresh, REFRESH_MS);
  setInterval(() => { if ($("drawer").hidden && document.activeElement !== $("search")) loadEntries(); }, REFRESH_MS * 3);
});
