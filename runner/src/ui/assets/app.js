// The live page: fetches /api/run, /api/result and /api/epochs, then follows /events (SSE).
// Everything from the data is put in the page as text (textContent), never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const MAX_TABLE_ROWS = 2000;
const PLOTTED_EPOCHS = 120;
const numbers = new Intl.NumberFormat();
// Fractions: two decimals from 1 on, three significant digits below (0.001 is not 0).
const fractions = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
const small = new Intl.NumberFormat(undefined, { maximumSignificantDigits: 3 });
// Characters that reorder the text around them (`\u202e` shows "evil" as "live"): shown as
// their code instead.
const BIDI_CONTROLS = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const isNumber = (v) => typeof v === "number" || typeof v === "bigint";
const $ = (id) => document.getElementById(id);

const page = {
  run: null,
  result: null,
  epochs: [],
  sort: { column: null, descending: true },
  fetching: false,
  again: false,
  runSeen: performance.now(),
};

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = visible(String(text));
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = visible(String(text));
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "bigint") return numbers.format(value);
  if (typeof value === "number") {
    if (Number.isInteger(value)) return numbers.format(value);
    return Math.abs(value) >= 1 || !Number.isFinite(value) ? fractions.format(value) : small.format(value);
  }
  return visible(String(value));
}

function visible(text) {
  return text.replace(BIDI_CONTROLS, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
}

function cellText(value) {
  if (value === null || value === undefined) return "";
  if (Array.isArray(value)) return visible(JSON.stringify(value));
  return visible(String(value));
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  // Integers past 2^53 (Mastodon's ids) are read exactly, as BigInt, from their digits.
  return JSON.parse(await response.text(), (key, value, context) =>
    typeof value === "number" && Number.isInteger(value) && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)
      ? BigInt(context.source)
      : value);
}

// ---- tabs (arrow keys move between them, as WAI-ARIA tabs do)
function setupTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const select = (tab) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", on);
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    tab.focus();
    if (tab.id === "tab-streaming") drawPlots();
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const next = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (next) select(tabs[(i + next + tabs.length) % tabs.length]);
      if (e.key === "Home") select(tabs[0]);
      if (e.key === "End") select(tabs[tabs.length - 1]);
    });
  });
}

// ---- header and run tab
function showState(state) {
  const badge = $("state");
  badge.dataset.state = state.state;
  badge.textContent = state.state + (state.exit_code !== null && state.exit_code !== undefined && state.exit_code !== 0 ? ` (exit ${state.exit_code})` : "");
  if (state.error) badge.title = state.error;
  if (page.run) Object.assign(page.run, state);
  page.runSeen = performance.now();
  tickElapsed();
  if (page.result) drawTable();
}

function showRun(run) {
  page.run = run;
  page.runSeen = performance.now();
  $("pipeline").textContent = visible(run.pipeline);
  document.title = `${visible(run.pipeline)} · runner`;
  showState(run);
  const facts = $("run-facts");
  facts.replaceChildren();
  const add = (name, value) => {
    const div = el("div");
    div.append(el("dt", name), el("dd", value));
    facts.append(div);
  };
  add("Pipeline", run.pipeline);
  add("File", run.file);
  add("Mode", run.mode + (run.output_mode ? ` (${run.output_mode})` : ""));
  add("Engine", run.engine);
  add("Cores", run.cores);
  add("Trigger", run.trigger || "–");
  add("Started", run.started);
  add("State", run.state + (run.exit_code !== null ? `, exit code ${run.exit_code}` : ""));
  if (run.stop_reason) add("Stopped because", run.stop_reason);
  if (run.error) add("Error", run.error);
  add("Source", run.source);
  if (run.mode === "stream") {
    add("Epochs", fmt(run.epochs));
    add("Input rows", fmt(run.input_rows));
    add("State rows", fmt(run.state_rows));
  }
  if (run.input_bytes) add("Input bytes", fmt(run.input_bytes));
  add("Output rows", fmt(run.output_rows));
  const stages = $("stages");
  stages.replaceChildren();
  const source = el("li");
  source.append(el("div", run.source, { class: "name" }), el("div", run.input_bytes ? `${fmt(run.input_bytes)} bytes read` : run.mode === "stream" ? `${fmt(run.input_rows)} rows in` : "", { class: "rows" }));
  stages.append(source);
  for (const stage of run.stages) {
    const li = el("li");
    li.append(el("div", stage.step, { class: "name" }));
    const counted = stage.rows_in === null ? null
      : `${fmt(stage.rows_in)} in → ${stage.rows_out === null ? "–" : fmt(stage.rows_out)} out · ${fmt(stage.rows_per_second)} rows/s`;
    const rows = stage.fused ? `in the fused kernel${counted ? " · " + counted : ""}` : counted || "not called yet";
    li.append(el("div", rows, { class: "rows" }));
    stages.append(li);
  }
  for (const sink of run.sink_rows) {
    const li = el("li");
    li.append(el("div", sink.sink, { class: "name" }), el("div", `${fmt(sink.rows)} rows written`, { class: "rows" }));
    stages.append(li);
  }
  const plan = run.plan || {};
  const operators = (plan.operators || []).map((o) => o.name).join(" → ");
  $("rules").textContent = `Operators: ${operators || "–"}. Rules applied: ${(plan.rules_applied || []).join(", ") || "none"}.`;
  $("warnings-total").textContent = run.warnings_total ? `(${fmt(run.warnings_total)})` : "";
  const list = $("warnings");
  list.replaceChildren();
  for (const w of run.warnings.slice().reverse()) list.append(warningItem(w));
  tickElapsed();
}

function tickElapsed() {
  if (!page.run) return;
  const running = page.run.state === "running" || page.run.state === "starting";
  const extra = running ? (performance.now() - page.runSeen) / 1000 : 0;
  const seconds = page.run.elapsed_seconds + extra;
  $("elapsed").textContent = seconds < 1 ? `${Math.round(seconds * 1000)} ms` : seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.floor(seconds % 60)} s`;
}

// ---- result: chart and table
function drawChart(chart) {
  const box = $("chart");
  box.replaceChildren();
  if (!chart) {
    $("chart-title").textContent = "No chart: the result has no text column and number column.";
    return;
  }
  $("chart-title").textContent = visible(chart.title);
  const bars = chart.bars;
  const [W, H] = [800, 360];
  const left = 56, right = 12, top = 22, bottom = 96;
  const plotW = W - left - right, plotH = H - top - bottom;
  const values = bars.map((b) => Number(b.value)).filter(Number.isFinite);
  let max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  // No bars or only zeros: an axis from 0 to 1 (a span of 0 would give a step of 0).
  if (max === min) max = 1;
  const step = niceStep((max - min) / 5);
  const ceiling = Math.ceil(max / step) * step;
  const floor = Math.floor(min / step) * step;
  const y = (v) => top + plotH - ((v - floor) / (ceiling - floor)) * plotH;
  for (let v = floor; v <= ceiling + step / 2; v += step) {
    box.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    box.append(svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt(v)));
  }
  box.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  const slot = plotW / Math.max(bars.length, 1);
  // Many bars: a label every few bars and no value above them, so that texts do not run into
  // each other (every bar's label and value stay in its tooltip).
  const labelEvery = Math.max(1, Math.ceil(12 / slot));
  const showValues = slot >= 28;
  bars.forEach((bar, i) => {
    const x = left + i * slot + slot * 0.12;
    const width = slot * 0.76;
    const g = svg("g", { class: "bar", "data-label": bar.label, "data-value": bar.value });
    const value = Number(bar.value);
    const barTop = Math.min(y(0), y(value));
    const rect = svg("rect", { x, y: barTop, width, height: Math.abs(y(0) - y(value)), fill: bar.colour });
    rect.append(svg("title", {}, `${visible(bar.label)}: ${fmt(bar.value)}`));
    g.append(rect);
    if (showValues) g.append(svg("text", { x: x + width / 2, y: value < 0 ? y(value) + 14 : y(value) - 4, "text-anchor": "middle", class: "value" }, fmt(bar.value)));
    // Cut on characters, not UTF-16 units (an emoji is not split in two).
    const characters = [...visible(bar.label)];
    const label = characters.length > 20 ? characters.slice(0, 19).join("") + "…" : characters.join("");
    if (i % labelEvery === 0) g.append(svg("text", { x: x + width / 2, y: y(floor) + 14, "text-anchor": "end", transform: `rotate(-45 ${x + width / 2} ${y(floor) + 14})`, class: "label" }, label));
    box.append(g);
  });
}

function niceStep(raw) {
  const power = Math.pow(10, Math.floor(Math.log10(Math.max(raw, 1e-9))));
  const f = raw / power;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * power;
}

function drawTable() {
  const result = page.result;
  const table = $("result");
  const head = table.tHead;
  const body = table.tBodies[0];
  if (!result) return;
  const columns = result.columns;
  const numeric = columns.map((c) => c.type === "integer" || c.type === "float");
  const row = el("tr");
  columns.forEach((column, i) => {
    const th = el("th", null, { scope: "col" });
    if (numeric[i]) th.className = "num";
    if (page.sort.column === i) th.setAttribute("aria-sort", page.sort.descending ? "descending" : "ascending");
    const button = el("button", column.name, { type: "button", title: `sort by ${column.name} (${column.type})` });
    button.addEventListener("click", () => {
      page.sort = { column: i, descending: page.sort.column === i ? !page.sort.descending : numeric[i] };
      drawTable();
    });
    th.append(button);
    row.append(th);
  });
  head.replaceChildren(row);
  const needle = $("filter").value.trim().toLowerCase();
  let rows = result.rows;
  if (needle) rows = rows.filter((r) => r.some((v) => cellText(v).toLowerCase().includes(needle)));
  if (page.sort.column !== null) {
    const i = page.sort.column;
    const sign = page.sort.descending ? -1 : 1;
    rows = rows.slice().sort((a, b) => {
      const [x, y] = [a[i], b[i]];
      if (x === y) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return (isNumber(x) && isNumber(y) ? (x < y ? -1 : x > y ? 1 : 0) : cellText(x).localeCompare(cellText(y))) * sign;
    });
  }
  const shown = rows.slice(0, MAX_TABLE_ROWS);
  const fragment = document.createDocumentFragment();
  for (const r of shown) {
    const tr = el("tr");
    r.forEach((v, i) => tr.append(el("td", numeric[i] ? fmt(v) : cellText(v), numeric[i] ? { class: "num" } : {})));
    fragment.append(tr);
  }
  body.replaceChildren(fragment);
  let note = `${fmt(shown.length)} of ${fmt(result.total_rows)} rows`;
  if (needle) note += ` (${fmt(rows.length)} match)`;
  if (result.truncated) note += "; the table holds the first rows, the CSV has all";
  if (result.rows_no_longer_held) note += `; ${fmt(result.rows_no_longer_held)} earlier rows no longer held`;
  // A run that failed before it had a result says so where the result would be.
  if (page.run && page.run.state === "failed" && result.total_rows === 0) {
    note = `No result: the run failed${page.run.error ? `: ${visible(page.run.error)}` : ""}`;
  }
  $("rows-shown").textContent = note;
}

function showResult(result) {
  page.result = result;
  const epoch = $("epoch");
  epoch.textContent = result.epoch === null ? "–" : fmt(result.epoch);
  epoch.dataset.epoch = result.epoch === null ? "" : result.epoch;
  $("updated").textContent = result.updated ? new Date(result.updated).toLocaleTimeString() : "–";
  drawChart(result.chart);
  drawTable();
}

// Fetches the result; while a fetch runs, newer results only mark it to run once more.
async function refreshResult() {
  if (page.fetching) { page.again = true; return; }
  page.fetching = true;
  try {
    do {
      page.again = false;
      showResult(await getJson("api/result?limit=10000"));
    } while (page.again);
  } catch (e) {
    $("connection").textContent = `error: ${e.message}`;
  } finally {
    page.fetching = false;
  }
}

// ---- streaming tab
function addEpoch(progress) {
  // One already fetched (an event and a fetch can both bring it) is not added twice.
  const last = page.epochs[page.epochs.length - 1];
  if (last && last.batchId >= progress.batchId) return;
  page.epochs.push(progress);
  if (page.epochs.length > 1000) page.epochs.shift();
}

function plotLine(id, values) {
  const box = $(id);
  box.replaceChildren();
  if (values.length === 0) return;
  const max = Math.max(1e-9, ...values);
  const n = values.length;
  const points = values.map((v, i) => `${n === 1 ? 150 : (i / (n - 1)) * 300},${78 - (v / max) * 74}`).join(" ");
  box.append(svg("polyline", { points }));
}

function plotDurations(epochs) {
  const box = $("plot-duration");
  box.replaceChildren();
  if (epochs.length === 0) return;
  const total = (e) => e.durationMs.triggerExecution;
  const max = Math.max(1e-9, ...epochs.map(total));
  const w = 300 / epochs.length;
  epochs.forEach((e, i) => {
    const engine = (e.durationMs.engine / max) * 76;
    const sinks = (e.durationMs.addBatch / max) * 76;
    box.append(svg("rect", { class: "engine", x: i * w, y: 78 - engine, width: Math.max(w * 0.8, 0.5), height: engine }));
    box.append(svg("rect", { class: "sinks", x: i * w, y: 78 - engine - sinks, width: Math.max(w * 0.8, 0.5), height: sinks }));
  });
}

function drawPlots() {
  const recent = page.epochs.slice(-PLOTTED_EPOCHS);
  plotLine("plot-input", recent.map((e) => e.inputRowsPerSecond));
  plotLine("plot-processed", recent.map((e) => e.processedRowsPerSecond));
  plotDurations(recent);
  plotLine("plot-state", recent.map((e) => e.stateRows));
  const last = recent[recent.length - 1];
  if (last) {
    $("last-input").textContent = `latest ${fmt(last.inputRowsPerSecond)}`;
    $("last-processed").textContent = `latest ${fmt(last.processedRowsPerSecond)}`;
    $("last-duration").textContent = `latest ${fmt(last.durationMs.triggerExecution)} ms (${fmt(last.durationMs.addBatch)} in sinks)`;
    $("last-state").textContent = `latest ${fmt(last.stateRows)}`;
  }
  const body = $("epochs").tBodies[0];
  const fragment = document.createDocumentFragment();
  for (const e of page.epochs.slice(-50).reverse()) {
    const tr = el("tr");
    for (const v of [e.batchId, new Date(e.timestamp).toLocaleTimeString(), e.numInputRows, e.inputRowsPerSecond, e.processedRowsPerSecond, e.durationMs.triggerExecution, e.durationMs.addBatch, e.stateRows, e.sink.numOutputRows]) {
      tr.append(el("td", typeof v === "number" ? fmt(v) : v, typeof v === "number" ? { class: "num" } : {}));
    }
    fragment.append(tr);
  }
  body.replaceChildren(fragment);
}

function warningItem(w) {
  const li = el("li");
  li.append(el("time", new Date(w.time).toLocaleTimeString(), { datetime: w.time }), document.createTextNode(w.message));
  return li;
}

// ---- everything again (at start, and when the server says this page fell behind)
async function resync() {
  try {
    const [run, epochs] = await Promise.all([getJson("api/run"), getJson("api/epochs")]);
    showRun(run);
    // Epochs that arrived as events while this was fetched are kept (by their number).
    const newest = epochs.length ? epochs[epochs.length - 1].batchId : -1;
    page.epochs = epochs.concat(page.epochs.filter((e) => e.batchId > newest));
    drawPlots();
    await refreshResult();
  } catch (e) {
    $("connection").textContent = `error: ${e.message}`;
  }
}

function follow() {
  const events = new EventSource("events");
  // Everything is fetched again on each (re)connection, after subscribing: nothing that
  // happened in between is missed, and a page that outlived its run shows the new one.
  events.addEventListener("open", () => {
    $("connection").textContent = "live";
    resync();
  });
  events.addEventListener("error", () => {
    const running = page.run && (page.run.state === "running" || page.run.state === "starting");
    $("connection").textContent = running ? "reconnecting" : "closed";
    if (!running) return;
    // The server gone while the page said "running": the run's process ended (or was killed).
    getJson("api/run").then(showRun).catch(() => {
      if (!page.run || !(page.run.state === "running" || page.run.state === "starting")) return;
      page.run.elapsed_seconds += (performance.now() - page.runSeen) / 1000;
      showState({ state: "gone", exit_code: null, error: "the run's process no longer answers: it ended without telling the page" });
      $("connection").textContent = "closed";
    });
  });
  events.addEventListener("state", (e) => {
    const state = JSON.parse(e.data);
    showState(state);
    getJson("api/run").then(showRun).catch(() => {});
  });
  events.addEventListener("epoch", (e) => {
    addEpoch(JSON.parse(e.data));
    drawPlots();
    if (page.run) page.run.epochs = page.epochs.length;
  });
  events.addEventListener("result", () => refreshResult());
  events.addEventListener("warning", (e) => {
    const list = $("warnings");
    list.prepend(warningItem(JSON.parse(e.data)));
    while (list.children.length > 200) list.lastChild.remove();
  });
  events.addEventListener("resync", () => resync());
}

document.addEventListener("DOMContentLoaded", () => {
  if (new URLSearchParams(location.search).has("token")) {
    // The server set its cookie: keep the token out of the address bar and history.
    history.replaceState(null, "", location.pathname);
  }
  setupTabs();
  $("filter").addEventListener("input", drawTable);
  follow();
  setInterval(tickElapsed, 500);
  // Rows per stage move between epochs: refresh the run tab while the run goes on.
  setInterval(() => {
    if (page.run && (page.run.state === "running" || page.run.state === "starting")) getJson("api/run").then(showRun).catch(() => {});
  }, 2000);
});
