// Trends (display level 4): one or several points over the last ten
// minutes, hour or day, or a chosen range, from TelemetryService.Query (the archive and
// the readings not sealed yet together: no gap at the seal boundary),
// reduced on the server to about one reading per pixel column with every
// peak kept. One panel per point, on its own scale, with its limits drawn
// and its alarms marked where they were raised and cleared. Drag across a
// panel to zoom in; the arrows pan; "Now" follows the present again.

import { $, L, api, banner, el, enumText, findPoint, fmt, message, num, state, svg } from "./core.js";

const WIDTH = 1200; // drawing units across (the SVG scales to the page)
const LEFT = 70;
const RIGHT = 14;
const PANEL = 150;
const GAP = 26;
const MAX_POINTS = 8;
const RANGES = { minutes: 600_000, hour: 3_600_000, day: 86_400_000 };
const FOLLOW_EVERY_MS = 10_000;

const trend = {
  points: [],
  range: "minutes",
  follow: true,
  from: 0,
  to: 0,
  readings: new Map(), // point -> [{t, v}]
  marks: [], // alarm events of the points
  drag: null,
  built: false,
  loading: 0,
};
window.hwTrend = trend;

const CONDITION = new Set(["TRANSITION_RAISED", "TRANSITION_CLEARED"]);

/** Builds the view's controls once. */
function build() {
  if (trend.built) return;
  trend.built = true;
  const picker = el("select", { id: "trend-pick" });
  $("trends").replaceChildren(
    el("div", { class: "trend-controls" },
      el("label", {}, el("span", { "data-l": "point" }, L("point")), " ", picker),
      el("button", { id: "trend-add", "data-l": "add", onclick: () => add(picker.value) }, L("add")),
      el("span", { id: "trend-chosen" }),
      el("span", { class: "spacer" }),
      el("button", { "data-range": "minutes", onclick: () => preset("minutes") }, L("last_minutes")),
      el("button", { "data-range": "hour", onclick: () => preset("hour") }, L("last_hour")),
      el("button", { "data-range": "day", onclick: () => preset("day") }, L("last_day")),
      el("input", { type: "datetime-local", id: "trend-from" }),
      el("input", { type: "datetime-local", id: "trend-to" }),
      el("button", { "data-l": "apply", onclick: custom }, L("apply")),
      el("button", { title: L("earlier"), onclick: () => pan(-0.5) }, "◀"),
      el("button", { title: L("later"), onclick: () => pan(0.5) }, "▶"),
      el("button", { id: "trend-now", "data-l": "now", onclick: () => preset(trend.range) }, L("now")),
    ),
    el("p", { id: "trend-range", class: "muted" }),
    svg("svg", { id: "trend-chart", viewBox: `0 0 ${WIDTH} ${PANEL}`, role: "img" }),
  );
  const chart = $("trend-chart");
  chart.addEventListener("pointerdown", dragStart);
  chart.addEventListener("pointermove", dragMove);
  chart.addEventListener("pointerup", dragEnd);
  setInterval(() => trend.follow && trend.points.length && !$("view-trends").hidden && load(), FOLLOW_EVERY_MS);
}

/** The points the caller may see, for the picker. */
function fillPicker() {
  const picker = $("trend-pick");
  const groups = (state.site?.enterprises ?? []).flatMap((e) =>
    e.hazard_sources.map((h) =>
      el("optgroup", { label: `${e.name || e.id} · ${h.name || h.id}` },
        h.units.flatMap((u) => u.points.map((p) => el("option", { value: p.id }, `${p.id} (${u.name || u.id})`)))),
    ),
  );
  const was = picker.value;
  picker.replaceChildren(...groups);
  if (was) picker.value = was;
}

/** Shows the view with `points` (from a hazard source's detail), or as it was. */
export function showTrends(points) {
  build();
  fillPicker();
  if (points?.length) {
    trend.points = points.slice(0, MAX_POINTS);
    trend.range = "minutes";
    trend.follow = true;
  }
  load();
}

/** Redraws in the current language. */
export function renderTrends() {
  if (!trend.built) return;
  for (const e of $("trends").querySelectorAll("[data-l]")) e.textContent = L(e.dataset.l);
  fillPicker();
  draw();
}

function add(point) {
  if (!point || trend.points.includes(point)) return;
  if (trend.points.length >= MAX_POINTS) {
    banner(L("trend_max"));
    return;
  }
  trend.points.push(point);
  load();
}

function remove(point) {
  trend.points = trend.points.filter((p) => p !== point);
  trend.readings.delete(point);
  load();
}

function preset(range) {
  trend.range = range;
  trend.follow = true;
  load();
}

function custom() {
  const from = Date.parse($("trend-from").value);
  const to = Date.parse($("trend-to").value);
  if (!(from < to)) {
    banner(L("range_invalid"));
    return;
  }
  trend.follow = false;
  [trend.from, trend.to] = [from, to];
  load();
}

function pan(fraction) {
  const shift = Math.round((trend.to - trend.from) * fraction);
  trend.follow = false;
  trend.from += shift;
  trend.to += shift;
  load();
}

/** Fetches the readings and alarm events of the range, then draws. */
async function load() {
  if (trend.follow) {
    trend.to = Date.now();
    trend.from = trend.to - RANGES[trend.range];
  }
  const ticket = ++trend.loading;
  if (!trend.points.length) {
    trend.readings.clear();
    trend.marks = [];
    draw();
    return;
  }
  try {
    const [data, marks] = await Promise.all([
      api("TelemetryService/Query", { points: trend.points, from_ms: trend.from, to_ms: trend.to, max_points: WIDTH }),
      alarmEvents(),
    ]);
    if (ticket !== trend.loading) return; // a newer load is under way
    trend.readings.clear();
    for (const p of trend.points) trend.readings.set(p, []);
    for (const r of data.readings) trend.readings.get(r.point)?.push({ t: Number(r.ts_ms), v: num(r.value) });
    trend.marks = marks;
  } catch (e) {
    banner(`${L("trend")} ${L("failed")}: ${e.message}`);
  }
  draw();
}

/** The raises and clears of the chosen points' alarms in the range (up to 10 pages). */
async function alarmEvents() {
  const sources = [...new Set(trend.points.map((p) => findPoint(p)?.h.id).filter(Boolean))];
  const events = [];
  let token = "";
  for (let page = 0; page < 10; page++) {
    const h = await api("AlarmService/History", {
      filter: { hazard_sources: sources, include_suppressed: true, include_shelved: true },
      from_ms: trend.from,
      to_ms: trend.to,
      page_size: 1000,
      page_token: token,
    });
    events.push(...h.events.filter((e) => trend.points.includes(e.point) && CONDITION.has(e.transition)));
    token = h.next_page_token;
    if (!token) break;
  }
  return events;
}

function x(t) {
  return LEFT + ((t - trend.from) / (trend.to - trend.from || 1)) * (WIDTH - LEFT - RIGHT);
}

function timeAt(px) {
  return trend.from + ((px - LEFT) / (WIDTH - LEFT - RIGHT)) * (trend.to - trend.from);
}

function stamp(ms, withDate) {
  const locale = state.lang === "zh" ? "zh-CN" : "en-GB";
  const d = new Date(ms);
  return withDate ? d.toLocaleString(locale, { hour12: false }) : d.toLocaleTimeString(locale, { hour12: false, hour: "2-digit", minute: "2-digit" });
}

const MARK_SHAPES = {
  PRIORITY_CRITICAL: "0,-7 7,0 0,7 -7,0",
  PRIORITY_HIGH: "-7,-6 7,-6 0,7",
  PRIORITY_MEDIUM: "-6,-6 6,-6 6,6 -6,6",
};

function draw() {
  const chart = $("trend-chart");
  if (!chart) return;
  $("trend-chosen").replaceChildren(
    ...trend.points.map((p) =>
      el("span", { class: "chip", "data-point": p }, p, " ", el("button", { title: L("remove"), onclick: () => remove(p) }, "×")),
    ),
  );
  for (const b of document.querySelectorAll("#trends [data-range]")) {
    b.classList.toggle("current", trend.follow && b.dataset.range === trend.range);
  }
  const local = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  $("trend-from").value = local(trend.from);
  $("trend-to").value = local(trend.to);
  $("trend-range").textContent = `${stamp(trend.from, true)} – ${stamp(trend.to, true)}${trend.follow ? ` (${L("live")})` : ""}`;
  const height = Math.max(1, trend.points.length) * (PANEL + GAP) + 20;
  chart.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
  if (!trend.points.length) {
    chart.replaceChildren(svg("text", { x: WIDTH / 2, y: 60, "text-anchor": "middle" }, L("trend_pick")));
    return;
  }
  const panels = trend.points.map((p, i) => panel(p, i * (PANEL + GAP) + 8));
  chart.replaceChildren(...panels, timeAxis(height - 12), svg("rect", { id: "trend-zoom", class: "zoom", x: 0, y: 0, width: 0, height, visibility: "hidden" }));
}

/** One point's panel: its scale, limits, line and alarm marks. */
function panel(id, top) {
  const found = findPoint(id);
  const meta = found?.p ?? { id, eng_unit: "" };
  const rows = trend.readings.get(id) ?? [];
  const limits = [
    ["HH", meta.hh, "lim-a"],
    ["H", meta.h, "lim-w"],
    ["L", meta.l, "lim-w"],
    ["LL", meta.ll, "lim-a"],
  ].filter(([, v]) => v !== null && v !== undefined);
  const values = rows.map((r) => r.v).filter(Number.isFinite);
  const all = values.concat(limits.map(([, v]) => v));
  let lo = all.length ? Math.min(...all) : num(meta.range_low);
  let hi = all.length ? Math.max(...all) : num(meta.range_high);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = [0, 1];
  if (hi === lo) [lo, hi] = [lo - 1, hi + 1];
  const pad = (hi - lo) * 0.08;
  [lo, hi] = [lo - pad, hi + pad];
  const y = (v) => top + PANEL - ((v - lo) / (hi - lo)) * PANEL;
  // The line, broken where there is no value (a gateway offline).
  let d = "";
  let pen = false;
  for (const r of rows) {
    if (!Number.isFinite(r.v)) {
      pen = false;
      continue;
    }
    d += `${pen ? "L" : "M"}${x(r.t).toFixed(1)},${y(r.v).toFixed(1)}`;
    pen = true;
  }
  const marks = trend.marks.filter((e) => e.point === id).map((e) => mark(e, top));
  return svg("g", { class: "panel", "data-point": id },
    svg("rect", { class: "frame", x: LEFT, y: top, width: WIDTH - LEFT - RIGHT, height: PANEL }),
    svg("text", { class: "panel-title", x: LEFT + 6, y: top + 14 }, `${id} (${meta.eng_unit || ""})${rows.length ? "" : " · " + L("no_data")}`),
    svg("text", { class: "tick", x: LEFT - 6, y: top + 10, "text-anchor": "end" }, fmt(hi)),
    svg("text", { class: "tick", x: LEFT - 6, y: top + PANEL, "text-anchor": "end" }, fmt(lo)),
    ...limits.map(([tag, v, cls]) =>
      svg("g", { class: `limit ${cls}`, "data-limit": tag },
        svg("line", { x1: LEFT, x2: WIDTH - RIGHT, y1: y(v), y2: y(v) }),
        svg("text", { x: WIDTH - RIGHT - 4, y: y(v) - 3, "text-anchor": "end" }, `${tag} ${fmt(v)}`)),
    ),
    svg("path", { class: "series", d }),
    ...marks,
  );
}

/** An alarm raised (a priority shape) or cleared (a ring) at its time. */
function mark(e, top) {
  const at = x(Number(e.event_time_ms));
  const raised = e.transition === "TRANSITION_RAISED";
  const tag = e.alarm_id.split("/").pop();
  const title = svg("title", {}, `${new Date(Number(e.event_time_ms)).toLocaleTimeString()} ${enumText("PRIORITY", e.priority)}: ${message(e.text_key, e.text_params, e)}`);
  const shape = raised
    ? MARK_SHAPES[e.priority]
      ? svg("polygon", { points: MARK_SHAPES[e.priority], class: `m-${e.priority}` })
      : svg("circle", { r: 6, class: `m-${e.priority}` })
    : svg("circle", { r: 5, class: "m-clear" });
  return svg("g", { class: `mark ${raised ? "raised" : "cleared"}`, "data-alarm": e.alarm_id, "data-transition": e.transition, transform: `translate(${at.toFixed(1)},${top + 9})` },
    svg("line", { class: "mark-line", x1: 0, x2: 0, y1: 0, y2: PANEL - 9 }),
    shape,
    svg("text", { class: "mark-tag", x: 9, y: 4 }, raised ? tag : ""),
    title,
  );
}

function timeAxis(y) {
  const ticks = [];
  const span = trend.to - trend.from;
  const n = 6;
  for (let i = 0; i <= n; i++) {
    const t = trend.from + (span * i) / n;
    ticks.push(svg("text", { class: "tick", x: x(t), y, "text-anchor": i === 0 ? "start" : i === n ? "end" : "middle" }, stamp(t, span > 86_400_000)));
  }
  return svg("g", { class: "axis" }, ...ticks);
}

// Zoom: drag across the chart to choose a shorter range.
function chartX(ev) {
  const box = $("trend-chart").getBoundingClientRect();
  return ((ev.clientX - box.left) / box.width) * WIDTH;
}

function dragStart(ev) {
  if (ev.target.closest?.(".mark")) return;
  trend.drag = { x0: chartX(ev) };
  $("trend-chart").setPointerCapture(ev.pointerId);
}

function dragMove(ev) {
  if (!trend.drag) return;
  const [a, b] = [trend.drag.x0, chartX(ev)].sort((p, q) => p - q);
  const zoom = $("trend-zoom");
  zoom.setAttribute("x", a);
  zoom.setAttribute("width", b - a);
  zoom.setAttribute("visibility", "visible");
}

function dragEnd(ev) {
  if (!trend.drag) return;
  const [a, b] = [trend.drag.x0, chartX(ev)].sort((p, q) => p - q);
  trend.drag = null;
  $("trend-zoom").setAttribute("visibility", "hidden");
  if (b - a < 8) return;
  const [from, to] = [timeAt(Math.max(a, LEFT)), timeAt(Math.min(b, WIDTH - RIGHT))];
  if (to - from < 1000) return;
  trend.follow = false;
  [trend.from, trend.to] = [Math.round(from), Math.round(to)];
  load();
}
