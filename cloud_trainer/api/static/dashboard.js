// EdgeSync dashboard: plain JavaScript against the REST API, no build step.
// The token comes from the address (#token=...), is kept for this browser tab and sent as a
// Bearer header; every REFRESH_MS the page re-reads the fleet and the selected edge.
"use strict";

const REFRESH_MS = 2000;
const RATE_WINDOW_S = 10;
const SVG = "http://www.w3.org/2000/svg";
const state = { token: null, selected: null, timer: null, thumbs: new Map() };

// ------------------------------------------------------------------ helpers

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1));
const bytes = (n) => (n >= 1e9 ? (n / 1e9).toFixed(2) + " GB" : n >= 1e6 ? (n / 1e6).toFixed(1) + " MB"
  : n >= 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B");
const clock = (t) => new Date(t * 1000).toLocaleTimeString();
const ago = (t) => { const s = Date.now() / 1000 - t; return s < 90 ? `${Math.max(0, s).toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`; };
const seconds = (s) => (s === null || s === undefined ? "–" : s < 120 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`);

class Unauthorised extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (response.status === 401) throw new Unauthorised((await response.json()).error);
  if (!response.ok) {
    let message = response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

const getJSON = async (path) => (await api(path)).json();

// ------------------------------------------------------------------ token

function readToken() {
  const match = location.hash.match(/token=([^&]+)/);
  if (match) {
    sessionStorage.setItem("edgesync-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname);  // keep the token out of the address bar
  }
  return sessionStorage.getItem("edgesync-token");
}

function showLogin(message) {
  clearTimeout(state.timer);
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

document.getElementById("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token-input").value.trim();
  sessionStorage.setItem("edgesync-token", state.token);
  start();
});

// ------------------------------------------------------------------ fleet

function renderTotals(o) {
  const items = [
    [`${o.online}/${o.edges}`, "edges online"],
    [o.samples_received, "samples"],
    [o.samples_labelled, "labelled"],
    [`${o.jobs.queued} / ${o.jobs.running}`, "jobs queued / running"],
    [o.jobs.done, "jobs done"],
    [o.models, "models"],
    [bytes(o.uplink_bytes), "uplink"],
    [bytes(o.downlink_bytes), "downlink"],
  ];
  document.getElementById("totals").replaceChildren(
    ...items.map(([value, label]) => el("div", { class: "total" }, el("b", {}, value), el("span", {}, label))));
}

function renderEdges(edges) {
  const box = document.getElementById("edges");
  if (!edges.length) {
    box.replaceChildren(el("div", { class: "empty" }, "No edge has registered yet. Start one with `edgesync edge run`."));
    return;
  }
  box.replaceChildren(...edges.map((e) => el("div", {
    class: `edge${e.edge_id === state.selected ? " selected" : ""}`,
    "data-edge": e.edge_id,
    onclick: () => { state.selected = e.edge_id; refresh(); },
  },
  el("div", { class: "edge-top" }, el("span", { class: "edge-id" }, e.edge_id), el("span", { class: `pill ${e.status}` }, e.status)),
  el("div", { class: "edge-main" },
    el("span", { class: "big", "data-field": "live-map50" }, pct(e.live_map50)),
    el("span", { class: "muted" }, "live mAP50 vs teacher")),
  el("div", { class: "kv" },
    el("span", {}, "model ", el("b", { "data-field": "model" }, `v${e.model_version}`), e.latest_version > e.model_version ? ` (v${e.latest_version} sent)` : ""),
    el("span", {}, "confidence ", el("b", {}, pct(e.confidence_proxy))),
    el("span", {}, "frames ", el("b", {}, e.frames)),
    el("span", {}, "queue ", el("b", {}, e.queue_depth)),
    el("span", {}, "uplink ", el("b", {}, bytes(e.uplink_bytes))),
    el("span", {}, "downlink ", el("b", {}, bytes(e.downlink_bytes))),
    el("span", {}, "scene changes ", el("b", {}, e.scene_changes)),
    el("span", {}, "heartbeat ", el("b", {}, ago(e.last_heartbeat)))))));
}

// ------------------------------------------------------------------ charts

function lineChart(container, { series, markers = [], yMax = null, yLabel = (v) => v, t0, t1 }) {
  const width = container.clientWidth || 600, height = container.clientHeight || 200;
  const pad = { l: 38, r: 12, t: 14, b: 22 };
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const top = yMax ?? Math.max(1e-9, ...values) * 1.15;
  const x = (t) => pad.l + ((t - t0) / Math.max(1e-9, t1 - t0)) * (width - pad.l - pad.r);
  const y = (v) => height - pad.b - (v / top) * (height - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = (top * i) / 4;
    svg.append(el("svg:line", { class: "grid-line", x1: pad.l, x2: width - pad.r, y1: y(v), y2: y(v) }));
    svg.append(el("svg:text", { class: "tick", x: pad.l - 6, y: y(v) + 3, "text-anchor": "end" }, yLabel(v)));
  }
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    svg.append(el("svg:text", { class: "tick", x: x(t), y: height - 6, "text-anchor": "middle" }, clock(t)));
  }
  for (const m of markers) {
    svg.append(el("svg:line", { x1: x(m.t), x2: x(m.t), y1: pad.t, y2: height - pad.b, stroke: m.color,
      "stroke-width": 1.5, "stroke-dasharray": m.dash || null, "data-marker": m.kind }));
    if (m.label) svg.append(el("svg:text", { class: "tick", x: x(m.t) + 3, y: pad.t + 8, fill: m.color }, m.label));
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join("");
    svg.append(el("svg:path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name }));
    if (s.dots) for (const p of s.points) svg.append(el("svg:circle", { cx: x(p[0]), cy: y(p[1]), r: 2.5, fill: s.color }));
  }
  container.replaceChildren(svg);
}

function renderCharts(detail) {
  const h = detail.history;
  const times = [...h.accuracy, ...h.heartbeats, ...h.scene_changes].map((e) => e.time);
  const now = Date.now() / 1000;
  const t0 = times.length ? Math.min(...times) : now - 60, t1 = Math.max(now, ...times, t0 + 10);
  const css = getComputedStyle(document.documentElement);
  const color = (name) => css.getPropertyValue(name).trim();
  const markers = [
    ...h.scene_changes.map((e) => ({ t: e.time, color: color("--warn"), dash: "4 3", kind: "scene" })),
    ...h.deployments.map((d) => ({ t: d.time, color: color("--violet"), label: `v${d.version}`, kind: "model" })),
  ];
  lineChart(document.getElementById("chart-accuracy"), {
    t0, t1, yMax: 1, yLabel: (v) => pct(v), markers,
    series: [
      { name: "live-map50", color: color("--accent"), dots: true, points: h.accuracy.map((e) => [e.time, e.data.live_map50]) },
      { name: "confidence", color: color("--blue"), points: h.heartbeats.map((e) => [e.time, e.data.confidence_proxy]) },
    ],
  });
  // uploads come in bursts between heartbeats: the rate over the last RATE_WINDOW_S reads steadily
  const rate = [];
  let first = 0;
  for (let i = 1; i < h.heartbeats.length; i++) {
    const b = h.heartbeats[i];
    while (first < i - 1 && b.time - h.heartbeats[first + 1].time >= RATE_WINDOW_S) first++;
    const a = h.heartbeats[first];
    if (b.time > a.time) rate.push([b.time, Math.max(0, b.data.uplink_bytes - a.data.uplink_bytes) / (b.time - a.time) / 1000]);
  }
  lineChart(document.getElementById("chart-uplink"), {
    t0, t1, yLabel: (v) => v.toFixed(0), markers: [],
    series: [{ name: "uplink", color: color("--blue"), points: rate }],
  });
}

// ------------------------------------------------------------------ detail panels

function table(head, rows, empty) {
  if (!rows.length) return el("div", { class: "empty" }, empty);
  return el("table", {}, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, r.map((c) => (c instanceof Node ? el("td", {}, c) : el("td", {}, c)))))));
}

function renderDelays(deployments) {
  const rows = deployments.slice(-8).reverse().map((d) =>
    [clock(d.time), `v${d.version}`, d.origin, seconds(d.delay_s)]);
  document.getElementById("delays").replaceChildren(table(["when", "model", "origin", "delay"], rows, "No model update yet."));
}

function renderJobs(jobs) {
  const gain = (g) => (g === null || g === undefined ? "–" : (g >= 0 ? "+" : "") + (100 * g).toFixed(1));
  const rows = jobs.map((j) => [
    el("span", { class: `st-${j.status}` }, j.status), j.job_id, gain(j.predicted_gain), gain(j.achieved_gain),
    seconds(j.duration_s), j.result_version ? `v${j.result_version}` : "–",
  ]);
  document.getElementById("jobs").replaceChildren(
    table(["status", "job", "predicted", "achieved", "took", "result"], rows, "No training job yet."));
}

function renderLineage(models, edge) {
  const box = document.getElementById("lineage");
  box.replaceChildren(...models.map((m) => el("div", { class: `model${m.running ? " running" : ""}`, "data-version": m.version },
    el("span", { class: "v" }, `v${m.version}`),
    el("span", { class: "tag" }, m.origin + (m.copy_of ? ` of v${m.copy_of}` : "")),
    m.preprocess && m.preprocess !== "none" ? el("span", { class: "tag" }, m.preprocess) : null,
    el("span", { class: "muted" }, m.parent ? `from v${m.parent}` : "first model"),
    el("span", {}, m.map50 !== null && m.map50 !== undefined ? `mAP50 ${pct(m.parent_map50)} → ${pct(m.map50)}` : ""),
    m.running ? el("span", { class: "pill online" }, "running") : null)));
  const select = document.getElementById("pin-version");
  const chosen = select.value;
  select.replaceChildren(...models.map((m) => el("option", { value: m.version }, `v${m.version}`)));
  if (chosen && models.some((m) => String(m.version) === chosen)) select.value = chosen;
  document.getElementById("pause-btn").textContent = edge.paused ? "Resume training" : "Pause training";
  document.getElementById("pause-btn").dataset.action = edge.paused ? "resume" : "pause";
  document.getElementById("pin-btn").textContent = edge.pinned_version ? `Unpin (v${edge.pinned_version})` : "Pin";
  document.getElementById("pin-btn").dataset.action = edge.pinned_version ? "unpin" : "pin";
}

async function thumbnail(sample) {
  if (!state.thumbs.has(sample.thumbnail)) {
    const blob = await (await api(sample.thumbnail)).blob();
    state.thumbs.set(sample.thumbnail, URL.createObjectURL(blob));
  }
  return state.thumbs.get(sample.thumbnail);
}

async function renderSamples(samples) {
  const figures = await Promise.all(samples.map(async (s) => el("figure", {},
    el("img", { src: await thumbnail(s), alt: `sample ${s.sample_id}` }),
    el("figcaption", {}, `${clock(s.received_time)} · score ${s.score.toFixed(2)} · teacher ${s.teacher_boxes ?? "…"} / student ${s.student_boxes}`))));
  document.getElementById("samples").replaceChildren(...(figures.length ? figures : [el("div", { class: "empty" }, "No uploads yet.")]));
}

async function renderDetail() {
  const panel = document.getElementById("detail");
  if (!state.selected) { panel.hidden = true; return; }
  const id = encodeURIComponent(state.selected);
  const [detail, jobs, models, samples] = await Promise.all([
    getJSON(`/api/v1/edges/${id}`),
    getJSON(`/api/v1/jobs?edge_id=${id}&limit=8`),
    getJSON(`/api/v1/models?edge_id=${id}&limit=50`),
    getJSON(`/api/v1/edges/${id}/samples?limit=6`),
  ]);
  panel.hidden = false;
  document.getElementById("detail-title").textContent =
    `${detail.edge_id} · running v${detail.model_version} · ${detail.samples_labelled} labelled samples`;
  renderCharts(detail);
  renderDelays(detail.history.deployments);
  renderJobs(jobs.items);
  renderLineage(models.items, detail);
  await renderSamples(samples.items);
}

document.querySelector(".actions").addEventListener("click", async (event) => {
  const action = event.target.dataset && event.target.dataset.action;
  if (!action || !state.selected) return;
  const output = document.getElementById("action-result");
  const body = action === "pin" ? JSON.stringify({ version: Number(document.getElementById("pin-version").value) }) : undefined;
  try {
    const result = await (await api(`/api/v1/edges/${encodeURIComponent(state.selected)}/${action}`, { method: "POST", body })).json();
    output.textContent = result.detail;
    output.className = "muted";
  } catch (error) {
    output.textContent = error.message;
    output.className = "error";
  }
  refresh();
});

// ------------------------------------------------------------------ loop

async function refresh() {
  clearTimeout(state.timer);
  const dot = document.getElementById("live-dot");
  try {
    const [overview, edges] = await Promise.all([getJSON("/api/v1/overview"), getJSON("/api/v1/edges?limit=500")]);
    document.getElementById("login").hidden = true;
    document.getElementById("app").hidden = false;
    if (!state.selected && edges.items.length) state.selected = edges.items[0].edge_id;
    renderTotals(overview);
    renderEdges(edges.items);
    await renderDetail();
    dot.className = "dot ok";
    document.getElementById("updated").textContent = `live · ${clock(overview.time)}`;
  } catch (error) {
    if (error instanceof Unauthorised) { showLogin(error.message); return; }
    dot.className = "dot err";
    document.getElementById("updated").textContent = `cannot reach the cloud: ${error.message}`;
  }
  state.timer = setTimeout(refresh, REFRESH_MS);
}

function start() {
  state.token = state.token || readToken();
  if (!state.token) { showLogin(); return; }
  refresh();
}

start();
