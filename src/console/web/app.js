// The hazardwatch console: logging in, the live alarm list (ISA-18.2 /
// EEMUA 191 practice), the park map and a hazard source's detail, and the
// navigation to the other views (trend.js, kpi.js, regulator.js); all over
// the console's JSON API (the gRPC services' own methods) and its alarm
// feed (Server-Sent Events, resumed by sequence number). No framework,
// nothing loaded from elsewhere: control-room networks are often offline.
// Text from the service (site names, comments, messages) is only ever set
// as text, never parsed as HTML.

import {
  $,
  FEED_FILTER,
  L,
  PRIORITY_RANK,
  api,
  applyLabels,
  banner,
  el,
  enterprises,
  findPoint,
  enumText,
  fmt,
  message,
  num,
  priorityShape,
  state,
  svg,
  time,
} from "./core.js";
import { renderKpis, showKpis } from "./kpi.js";
import { noteDisposed, renderRegulator, showRegulator } from "./regulator.js";
import { renderTrends, showTrends } from "./trend.js";

// ---------------------------------------------------------------- login

function showLogin(error = "") {
  closeFeed();
  $("login-error").textContent = error;
  if (!$("login").open) $("login").showModal();
}

async function login(ev) {
  ev.preventDefault();
  const r = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: $("token").value }),
  });
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    $("login-error").textContent = `${L("login_failed")}: ${data.message || r.status}`;
    return;
  }
  $("token").value = "";
  $("login").close();
  state.me = data;
  await start();
}

async function logout() {
  await fetch("/api/logout", { method: "POST", headers: { "content-type": "application/json" } });
  location.reload();
}

// ---------------------------------------------------------------- start

async function boot() {
  applyLabels();
  $("operator").value = localStorage.getItem("hw.operator") || "";
  $("operator").addEventListener("change", () => localStorage.setItem("hw.operator", $("operator").value.trim()));
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  $("lang").addEventListener("click", () => {
    state.lang = state.lang === "zh" ? "en" : "zh";
    localStorage.setItem("hw.lang", state.lang);
    applyLabels();
    renderAll();
  });
  $("mute").addEventListener("click", () => {
    state.muted = !state.muted;
    applyLabels();
  });
  for (const b of document.querySelectorAll("#nav button")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }
  $("ack-page").addEventListener("click", ackPage);
  for (const id of ["f-enterprise", "f-source", "f-priority", "f-state"]) $(id).addEventListener("change", renderAlarms);
  setInterval(() => ($("clock").textContent = new Date().toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false })), 1000);
  setInterval(annunciate, 2000);
  // Browsers start sound only after a gesture: any click allows it.
  document.addEventListener("click", () => audio?.resume?.(), { capture: true });
  state.texts = await (await fetch("/api/text")).json();
  const r = await fetch("/api/whoami");
  if (r.status === 401) return showLogin();
  state.me = await r.json();
  await start();
}

async function start() {
  $("me").textContent = state.me.open ? "" : `${state.me.name} · ${state.me.role}`;
  $("logout").hidden = state.me.open;
  $("ack-page").disabled = !canAct();
  state.site = await api("SiteService/Describe");
  $("park-name").textContent = state.site.park_name || state.site.park_id;
  fillFilters();
  await refreshRisk();
  await loadAlarms();
  if (!state.started) {
    state.started = true;
    setInterval(() => state.detail && showDetail(state.detail), 5000);
  }
}

function canAct() {
  return state.me && (state.me.role === "operator" || state.me.role === "admin");
}

function show(view, points) {
  for (const b of document.querySelectorAll("#nav button")) b.classList.toggle("current", b.dataset.view === view);
  for (const s of document.querySelectorAll("main .view")) s.hidden = s.id !== "view-" + view;
  if (view === "map") renderMap();
  if (view === "trends") showTrends(points);
  if (view === "kpis") showKpis();
  if (view === "regulator") showRegulator();
}

function renderAll() {
  fillFilters();
  renderAlarms();
  renderMap();
  renderTrends();
  renderKpis();
  renderRegulator();
  if (state.detail) showDetail(state.detail);
}

// ---------------------------------------------------------------- alarm list

function fillFilters() {
  const keep = (id, options) => {
    const s = $(id);
    const was = s.value;
    s.replaceChildren(el("option", { value: "" }, L("all")), ...options.map(([v, t]) => el("option", { value: v }, t)));
    s.value = options.some(([v]) => v === was) ? was : "";
  };
  keep("f-enterprise", enterprises().map((e) => [e.id, e.name || e.id]));
  keep("f-source", enterprises().flatMap((e) => e.hazard_sources.map((h) => [h.id, h.name || h.id])));
  keep("f-priority", ["PRIORITY_CRITICAL", "PRIORITY_HIGH", "PRIORITY_MEDIUM", "PRIORITY_LOW"].map((p) => [p, enumText("PRIORITY", p)]));
  keep("f-state", ["ALARM_STATE_UNACKED_ACTIVE", "ALARM_STATE_ACKED_ACTIVE", "ALARM_STATE_UNACKED_RTN"].map((p) => [p, enumText("ALARM_STATE", p)]));
}

function rowFromActive(a) {
  return {
    id: a.alarm_id,
    enterprise: a.enterprise,
    hazard_source: a.hazard_source,
    unit: a.unit,
    point: a.point,
    kind: a.kind,
    priority: a.priority,
    state: a.state,
    raised: Number(a.raised_at_ms),
    value: num(a.value),
    limit: num(a.limit),
    eng_unit: a.eng_unit,
    text_key: a.text_key,
    text_params: a.text_params,
    message: a.message,
    latched: a.latched,
    suppressed: a.suppressed,
    shelved_until: Number(a.shelved_until_ms),
    out_of_service: a.out_of_service,
    escalation: a.escalation_level,
    awaiting: a.awaiting_disposal,
    seq: Number(a.last_seq),
  };
}

async function loadAlarms() {
  closeFeed();
  const r = await api("AlarmService/ListActive", { filter: FEED_FILTER });
  state.alarms.clear();
  for (const a of r.alarms) state.alarms.set(a.alarm_id, rowFromActive(a));
  state.lastSeq = Number(r.as_of_seq);
  renderAlarms();
  openFeed();
}

function closeFeed() {
  if (state.feed) state.feed.close();
  state.feed = null;
  setLink(false);
}

function setLink(up) {
  $("link").dataset.state = up ? "up" : "down";
  $("link").title = up ? L("live") : L("reconnecting");
  if (up) {
    if ($("banner").dataset.kind === "link") banner("");
  } else if (state.feed) {
    banner(L("reconnecting"), true);
    $("banner").dataset.kind = "link";
  }
}

function openFeed() {
  const q = new URLSearchParams({ after: String(state.lastSeq), filter: JSON.stringify(FEED_FILTER) });
  const feed = new EventSource("/api/v1/AlarmService/Subscribe?" + q);
  state.feed = feed;
  feed.addEventListener("alarm", (m) => applyEvent(JSON.parse(m.data)));
  feed.addEventListener("failed", (m) => {
    // The feed cannot resume (e.g. the journal no longer holds the point):
    // start again from a fresh list.
    const f = JSON.parse(m.data);
    banner(`${L("failed")}: ${f.message}`);
    closeFeed();
    setTimeout(loadAlarms, 1000);
  });
  feed.onopen = () => setLink(true);
  feed.onerror = () => {
    if (state.feed !== feed) return;
    setLink(false);
    // The browser retries by itself (sending the last event id); a feed
    // it gave up on is opened again from the last event applied.
    if (feed.readyState === EventSource.CLOSED) setTimeout(() => state.feed === feed && loadAlarms(), 2000);
  };
}

const CONDITION = new Set(["TRANSITION_RAISED", "TRANSITION_CLEARED"]);

function applyEvent(e) {
  const seq = Number(e.seq);
  if (seq <= state.lastSeq) return;
  state.lastSeq = seq;
  state.applied.push(seq);
  if (state.applied.length > 20000) state.applied.shift();
  if (e.transition === "TRANSITION_RISK_CHANGED") {
    const was = state.risk.get(e.hazard_source);
    state.risk.set(e.hazard_source, { colour: e.risk_colour, reasons: was?.reasons ?? [] });
    refreshRisk(); // the reasons, and the enterprises' colours
    renderMap();
    return;
  }
  if (e.transition === "TRANSITION_UNIT_STATE_CHANGED") {
    api("SiteService/Describe").then((s) => {
      state.site = s;
      if (state.detail) showDetail(state.detail);
    });
    return;
  }
  if (e.transition === "TRANSITION_DISPOSED") noteDisposed(e);
  // Normal again and acknowledged: gone, unless it still waits for its
  // disposal record (the Disposal view keeps it until then).
  if (e.state === "ALARM_STATE_NORMAL" && !e.awaiting_disposal) {
    state.alarms.delete(e.alarm_id);
    scheduleRender();
    return;
  }
  let row = state.alarms.get(e.alarm_id);
  const fresh = !row;
  if (!row) row = { id: e.alarm_id, raised: Number(e.event_time_ms) };
  Object.assign(row, {
    enterprise: e.enterprise,
    hazard_source: e.hazard_source,
    unit: e.unit,
    point: e.point,
    kind: e.kind,
    priority: e.priority,
    state: e.state,
    latched: e.latched,
    suppressed: e.suppressed,
    shelved_until: Number(e.shelved_until_ms),
    out_of_service: e.out_of_service,
    escalation: e.escalation_level,
    awaiting: e.awaiting_disposal,
    seq,
  });
  if (fresh || CONDITION.has(e.transition)) {
    Object.assign(row, {
      value: num(e.value),
      limit: num(e.limit),
      eng_unit: e.eng_unit,
      text_key: e.text_key,
      text_params: e.text_params,
      message: e.message,
    });
  }
  if (e.transition === "TRANSITION_RAISED") {
    row.raised = Number(e.event_time_ms);
    row.pendingTiming = true;
  }
  state.alarms.set(e.alarm_id, row);
  scheduleRender();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderAlarms();
    renderRegulator();
    if (state.detail) renderDetailAlarms();
  });
}

function shelved(r) {
  return r.shelved_until > Date.now();
}

function hiddenByDesign(r) {
  return r.suppressed || shelved(r) || r.out_of_service;
}

function unacked(r) {
  return r.state === "ALARM_STATE_UNACKED_ACTIVE" || r.state === "ALARM_STATE_UNACKED_RTN";
}

function visibleRows() {
  const f = {
    enterprise: $("f-enterprise").value,
    source: $("f-source").value,
    priority: $("f-priority").value,
    state: $("f-state").value,
  };
  return [...state.alarms.values()]
    .filter((r) => r.state !== "ALARM_STATE_NORMAL")
    .filter((r) => state.showHidden || !hiddenByDesign(r))
    .filter((r) => !f.enterprise || r.enterprise === f.enterprise)
    .filter((r) => !f.source || r.hazard_source === f.source)
    .filter((r) => !f.priority || r.priority === f.priority)
    .filter((r) => !f.state || r.state === f.state)
    .sort((a, b) => (PRIORITY_RANK[b.priority] ?? 0) - (PRIORITY_RANK[a.priority] ?? 0) || b.raised - a.raised);
}

function renderSummary() {
  const rows = [...state.alarms.values()];
  const count = (key, n, toggles) =>
    el(
      "span",
      {
        class: toggles ? `count toggle${state.showHidden ? " on" : ""}` : "count",
        "data-count": key,
        title: toggles ? L("show_hidden") : undefined,
        onclick: toggles ? () => { state.showHidden = !state.showHidden; renderAlarms(); } : undefined,
      },
      L(key),
      el("b", {}, String(n)),
    );
  $("summary").replaceChildren(
    count("active", rows.filter((r) => !hiddenByDesign(r) && r.state !== "ALARM_STATE_NORMAL").length),
    count("unacked", rows.filter((r) => !hiddenByDesign(r) && unacked(r)).length),
    count("latched", rows.filter((r) => r.latched).length),
    count("shelved", rows.filter(shelved).length, true),
    count("suppressed", rows.filter((r) => r.suppressed).length, true),
    count("out_of_service", rows.filter((r) => r.out_of_service).length, true),
    count("awaiting", rows.filter((r) => r.awaiting).length),
  );
}

/** The point's limit alarms latch until reset (gas detection). */
function latching(r) {
  if (r.latched) return true;
  if (!r.point || !/\/(HH|H|L|LL)$/.test(r.id)) return false;
  return findPoint(r.point)?.p.latch ?? false;
}

function rowActions(r) {
  const act = canAct();
  const b = (label, fn, show = true) => (show ? el("button", { disabled: !act, onclick: () => fn(r), "data-action": label }, L(label)) : null);
  return [
    b("ack", ack, unacked(r)),
    // A latching (gas) alarm: reset is offered once its condition has
    // cleared; until then it shows, unavailable.
    latching(r) ? el("button", { disabled: !act || !r.latched, onclick: () => reset(r), "data-action": "reset", title: r.latched ? "" : L("reset_when_clear") }, L("reset")) : null,
    b("shelve", shelve, !shelved(r) && !r.out_of_service),
    b("unshelve", unshelve, shelved(r)),
    b("comment", comment),
    b("dispose", dispose, r.awaiting),
  ];
}

function renderAlarms() {
  renderSummary();
  const rows = visibleRows();
  const body = rows.map((r) => {
    const cls = [
      r.state === "ALARM_STATE_UNACKED_ACTIVE" ? "unacked" : "",
      r.state === "ALARM_STATE_UNACKED_RTN" ? "rtn unacked" : "",
    ].join(" ");
    const flags = [
      r.latched ? el("span", { class: "flag" }, L("latched")) : null,
      shelved(r) ? el("span", { class: "flag" }, L("shelved")) : null,
      r.suppressed ? el("span", { class: "flag" }, L("suppressed")) : null,
      r.out_of_service ? el("span", { class: "flag" }, L("out_of_service")) : null,
      r.awaiting ? el("span", { class: "flag" }, L("awaiting")) : null,
      r.escalation && r.escalation !== "ESCALATION_LEVEL_ENTERPRISE" && r.escalation !== "ESCALATION_LEVEL_UNSPECIFIED"
        ? el("span", { class: "flag" }, `${L("escalated_to")}: ${enumText("ESCALATION_LEVEL", r.escalation)}`)
        : null,
    ];
    const tag = r.id.split("/").pop();
    const text = r.text_key ? message(r.text_key, r.text_params, r) : r.message;
    return el(
      "tr",
      { class: cls, "data-alarm": r.id, "data-state": r.state, "data-seq": String(r.seq) },
      el("td", {}, priorityShape(r.priority)),
      el("td", { class: "num" }, time(r.raised)),
      el("td", {}, r.enterprise),
      el("td", {}, r.point || r.unit || r.enterprise),
      el("td", {}, tag),
      el("td", {}, enumText("ALARM_STATE", r.state)),
      el("td", { class: "num" }, Number.isFinite(r.value) ? `${fmt(r.value)} ${r.eng_unit || ""}` : "-"),
      el("td", { class: "msg" }, text, flags),
      el("td", {}, rowActions(r)),
    );
  });
  $("alarm-rows").replaceChildren(...body);
  $("no-alarms").hidden = rows.length > 0;
  // Raise to row: the raise's event time to the row in the page.
  const shown = Date.now();
  for (const r of state.alarms.values()) {
    if (r.pendingTiming) {
      r.pendingTiming = false;
      state.rowTimes.push({ id: r.id, seq: r.seq, eventTime: r.raised, shown });
      if (state.rowTimes.length > 10000) state.rowTimes.shift();
    }
  }
}

// ---------------------------------------------------------------- actions

function operator() {
  return $("operator").value.trim();
}

async function run(label, call) {
  if (!operator()) {
    banner(L("operator_first"));
    $("operator").focus();
    return;
  }
  try {
    await call();
  } catch (e) {
    banner(`${L(label)} ${L("failed")}: ${e.message}`);
  }
}

function ack(r) {
  return run("ack", () => api("AlarmService/Acknowledge", { alarm_id: r.id, operator: operator(), comment: "" }));
}

async function ackPage() {
  for (const r of visibleRows().filter(unacked)) await ack(r);
}

function reset(r) {
  return run("reset", () => api("AlarmService/Reset", { alarm_id: r.id, operator: operator(), comment: "" }));
}

function unshelve(r) {
  return run("unshelve", () => api("AlarmService/Unshelve", { alarm_id: r.id, operator: operator(), comment: "" }));
}

/** Asks for the fields of an action in a dialog; resolves with their values, or null. */
function ask(title, fields) {
  return new Promise((resolve) => {
    const dialog = $("ask");
    $("ask-title").textContent = title;
    $("ask-error").textContent = "";
    const inputs = fields.map((f) =>
      f.type === "number"
        ? el("input", { type: "number", name: f.name, min: f.min, max: f.max, value: f.value, required: true })
        : el("textarea", { name: f.name, rows: 2, maxlength: 1000, required: true }),
    );
    $("ask-fields").replaceChildren(...fields.map((f, i) => el("label", {}, L(f.label), inputs[i])));
    dialog.onclose = () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      resolve(Object.fromEntries(fields.map((f, i) => [f.name, inputs[i].value.trim()])));
    };
    dialog.returnValue = "";
    dialog.showModal();
  });
}

async function shelve(r) {
  const v = await ask(`${L("shelve")} ${r.id}`, [
    { name: "reason", label: "reason" },
    { name: "minutes", label: "duration_min", type: "number", min: 1, max: 480, value: 60 },
  ]);
  if (!v) return;
  await run("shelve", () =>
    api("AlarmService/Shelve", { alarm_id: r.id, operator: operator(), comment: v.reason, duration_s: Math.round(Number(v.minutes) * 60) }),
  );
}

async function comment(r) {
  const v = await ask(`${L("comment")} ${r.id}`, [{ name: "text", label: "comment" }]);
  if (!v) return;
  await run("comment", () => api("AlarmService/Comment", { alarm_id: r.id, operator: operator(), comment: v.text }));
}

async function dispose(r) {
  const v = await ask(`${L("dispose")} ${r.id}`, [
    { name: "cause", label: "cause" },
    { name: "action", label: "action_taken" },
  ]);
  if (!v) return;
  await run("dispose", () => api("AlarmService/Dispose", { alarm_id: r.id, operator: operator(), cause: v.cause, action: v.action }));
}

// ---------------------------------------------------------------- sound

let audio = null;
function tone(freq, start, length) {
  const o = audio.createOscillator();
  const g = audio.createGain();
  o.frequency.value = freq;
  g.gain.value = 0.12;
  o.connect(g).connect(audio.destination);
  o.start(audio.currentTime + start);
  o.stop(audio.currentTime + start + length);
}

/** New critical and high alarms sound until acknowledged (unless muted). */
function annunciate() {
  const waiting = [...state.alarms.values()].filter(
    (r) => !hiddenByDesign(r) && r.state === "ALARM_STATE_UNACKED_ACTIVE" && PRIORITY_RANK[r.priority] >= 3,
  );
  const critical = waiting.some((r) => r.priority === "PRIORITY_CRITICAL");
  document.body.dataset.annunciating = waiting.length ? (critical ? "critical" : "high") : "";
  if (!waiting.length || state.muted) return;
  try {
    audio ??= new AudioContext();
    if (critical) {
      tone(880, 0, 0.18);
      tone(660, 0.25, 0.18);
    } else {
      tone(660, 0, 0.2);
    }
  } catch {
    // No audio device: the flashing rows still annunciate.
  }
}

// ---------------------------------------------------------------- map

async function refreshRisk() {
  try {
    const r = await api("SiteService/Risk");
    state.risk.clear();
    for (const e of r.enterprises) {
      for (const h of e.hazard_sources) state.risk.set(h.id, { colour: h.colour, reasons: h.reason_texts });
    }
    renderMap();
    if (state.detail) renderDetailHeader();
  } catch (e) {
    banner(`${L("risk")} ${L("failed")}: ${e.message}`);
  }
}

function colourOf(id) {
  return String(state.risk.get(id)?.colour ?? "RISK_COLOUR_UNSPECIFIED").replace("RISK_COLOUR_", "");
}

function renderMap() {
  const map = $("map");
  if (!state.site || $("view-map").hidden) return;
  const placed = [];
  const unplaced = [];
  for (const e of enterprises()) {
    for (const h of e.hazard_sources) (h.position ? placed : unplaced).push({ e, h });
  }
  // On the site plan: its own coordinates. Otherwise fit the positions
  // into the drawing (north up for lon/lat).
  const plan = state.site.plan;
  const xy = (p) => (p.geo ? [p.x, -p.y] : [p.x, p.y]);
  const pts = placed.map(({ h }) => xy(h.position));
  const [W, H, M] = plan ? [plan.width, plan.height, 0] : [1000, 560, 130];
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const scale = Math.min((W - 2 * M) / (x1 - x0 || 1), (H - 2 * M) / (y1 - y0 || 1));
  const at = (p) => {
    if (plan) return [p.x, p.y];
    const [x, y] = xy(p);
    return [M + (x1 === x0 ? (W - 2 * M) / 2 : (x - x0) * scale), M + (y1 === y0 ? (H - 2 * M) / 2 : (y - y0) * scale)];
  };
  const shapes = plan ? [svg("image", { href: "/api/plan", x: 0, y: 0, width: W, height: H, class: "plan" })] : [];
  // Each enterprise's plot (without a plan): the box around its hazard sources.
  for (const e of plan ? [] : enterprises()) {
    const mine = placed.filter((p) => p.e === e).map(({ h }) => at(h.position));
    if (!mine.length) continue;
    const bx = [Math.min(...mine.map((p) => p[0])) - 110, Math.max(...mine.map((p) => p[0])) + 110];
    const by = [Math.min(...mine.map((p) => p[1])) - 60, Math.max(...mine.map((p) => p[1])) + 60];
    shapes.push(
      svg("rect", { class: "plot", x: bx[0], y: by[0], width: bx[1] - bx[0], height: by[1] - by[0], rx: 6 }),
      svg("text", { x: bx[0] + 8, y: by[0] + 18 }, e.name || e.id),
    );
  }
  for (const { h } of placed) {
    const [x, y] = at(h.position);
    const colour = colourOf(h.id);
    shapes.push(
      svg("circle", { class: `source ${colour}`, cx: x, cy: y, r: 22, "data-source": h.id, "data-colour": colour, onclick: () => showDetail(h.id) },
        svg("title", {}, `${h.name || h.id}: ${enumText("RISK_COLOUR", "RISK_COLOUR_" + colour)}`)),
      svg("text", { class: "grade", x, y: y + 5, "text-anchor": "middle" }, String(h.grade)),
      svg("text", { x, y: y + 42, "text-anchor": "middle" }, h.name || h.id),
    );
  }
  unplaced.forEach(({ h }, i) => {
    const x = 60 + i * 180;
    const colour = colourOf(h.id);
    shapes.push(
      svg("circle", { class: `source ${colour}`, cx: x, cy: H + 10, r: 12, "data-source": h.id, "data-colour": colour, onclick: () => showDetail(h.id) }),
      svg("text", { x: x + 18, y: H + 15 }, `${h.name || h.id} (${L("no_position")})`),
    );
  });
  map.setAttribute("viewBox", `0 0 ${W} ${H + (unplaced.length ? 40 : 0)}`);
  map.replaceChildren(...shapes);
}

// ---------------------------------------------------------------- detail

function findSource(id) {
  for (const e of enterprises()) {
    const h = e.hazard_sources.find((x) => x.id === id);
    if (h) return { e, h };
  }
  return null;
}

async function showDetail(id) {
  const found = findSource(id);
  if (!found) return;
  state.detail = id;
  const { e, h } = found;
  const points = h.units.flatMap((u) => u.points.map((p) => p.id));
  let latest = [];
  let gateways = [];
  try {
    [latest, gateways] = await Promise.all([
      points.length ? api("TelemetryService/Latest", { points }).then((r) => r.readings) : [],
      api("SiteService/Gateways", { enterprises: [e.id] }).then((r) => r.gateways),
    ]);
  } catch (err) {
    banner(`${L("failed")}: ${err.message}`);
  }
  if (state.detail !== id) return;
  const values = new Map(latest.map((r) => [r.point, r]));
  const online = new Map(gateways.map((g) => [g.gateway, g.online]));
  const mine = new Set(h.units.flatMap((u) => u.points.map((p) => p.gateway)).filter(Boolean));
  const panel = $("detail");
  panel.hidden = false;
  panel.replaceChildren(
    el("div", { id: "detail-header" }),
    el("h4", {}, L("gateways")),
    el("div", {}, [...mine].map((g) => el("span", { class: `gw ${online.get(g) ? "online" : "offline"}`, "data-gateway": g }, `${g}: ${online.get(g) ? L("online") : L("offline")}`))),
    el("h4", {}, L("alarms_here")),
    el("div", { id: "detail-alarms" }),
    el("h4", {}, L("units")),
    ...h.units.map((u) =>
      el("div", { class: "unit", "data-unit": u.id },
        el("strong", {}, u.name || u.id), " ", el("span", { class: "flag" }, enumText("UNIT_STATE", u.state)),
        u.points.map((p) => pointRow(p, values.get(p.id))),
      ),
    ),
    el("p", {}, el("button", { onclick: () => { state.detail = null; panel.hidden = true; } }, L("close"))),
  );
  renderDetailHeader();
  renderDetailAlarms();
}

function renderDetailHeader() {
  const found = state.detail && findSource(state.detail);
  const header = $("detail-header");
  if (!found || !header) return;
  const { e, h } = found;
  const risk = state.risk.get(h.id);
  const colour = colourOf(h.id);
  header.replaceChildren(
    el("h3", {}, `${h.name || h.id} (${h.id})`),
    el("div", {}, `${e.name || e.id} · ${L("grade")} ${h.grade} · ${L("risk")} `,
      el("span", { class: `risk-chip ${colour}`, "data-colour": colour }, enumText("RISK_COLOUR", "RISK_COLOUR_" + colour))),
    el("ul", {}, (risk?.reasons ?? []).map((r) => el("li", {}, message(r.key, r.params)))),
    h.camera_url
      ? el("p", {}, el("a", { href: h.camera_url, target: "_blank", rel: "noopener noreferrer" }, L("camera")))
      : el("p", { class: "muted" }, L("no_camera")),
  );
}

function renderDetailAlarms() {
  const box = $("detail-alarms");
  if (!box) return;
  const rows = [...state.alarms.values()]
    .filter((r) => r.hazard_source === state.detail && !hiddenByDesign(r))
    .sort((a, b) => (PRIORITY_RANK[b.priority] ?? 0) - (PRIORITY_RANK[a.priority] ?? 0) || b.raised - a.raised);
  box.replaceChildren(
    ...(rows.length
      ? rows.map((r) => el("div", { class: unacked(r) ? "unacked-row" : "", "data-alarm": r.id }, priorityShape(r.priority), " ",
          r.text_key ? message(r.text_key, r.text_params, r) : r.message,
          r.escalation && r.escalation !== "ESCALATION_LEVEL_ENTERPRISE" && r.escalation !== "ESCALATION_LEVEL_UNSPECIFIED"
            ? el("span", { class: "flag" }, `${L("escalated_to")}: ${enumText("ESCALATION_LEVEL", r.escalation)}`)
            : null,
          r.awaiting ? el("span", { class: "flag" }, L("awaiting")) : null))
      : [el("p", {}, L("no_alarms"))]),
  );
}

/** Where the value sits between the point's limits (ISA-101 analog indicator). */
function gauge(p, value) {
  const lo = Number(p.range_low);
  const hi = Number(p.range_high);
  const span = hi - lo || 1;
  const x = (v) => Math.max(0, Math.min(100, (100 * (v - lo)) / span));
  const lim = (v) => (v === null || v === undefined ? null : Number(v));
  const [ll, l, h, hh] = [lim(p.ll), lim(p.l), lim(p.h), lim(p.hh)];
  const bands = [];
  const band = (a, b, cls) => a !== null && b !== null && b > a && bands.push(svg("rect", { class: cls, x: x(a), y: 2, width: x(b) - x(a), height: 6 }));
  band(lo, hi, "band-n");
  if (l !== null) band(ll ?? lo, l, "band-w");
  if (ll !== null) band(lo, ll, "band-a");
  if (h !== null) band(h, hh ?? hi, "band-w");
  if (hh !== null) band(hh, hi, "band-a");
  const alarm = [...state.alarms.values()].find((r) => r.point === p.id && !hiddenByDesign(r));
  const markCls = alarm ? `mark p${PRIORITY_RANK[alarm.priority] ?? 0}` : "mark";
  const marks = Number.isFinite(value) ? [svg("rect", { class: markCls, x: x(value) - 0.75, y: 0, width: 1.5, height: 10 })] : [];
  return svg("svg", { class: "gauge", viewBox: "0 0 100 10", preserveAspectRatio: "none" }, bands, marks);
}

function pointRow(p, reading) {
  const value = reading ? num(reading.value) : NaN;
  const offline = reading?.quality === "QUALITY_OFFLINE";
  return el("div", { class: "point-row", "data-point": p.id, title: L("show_trend"), onclick: () => show("trends", [p.id]) },
    el("span", {}, p.id),
    gauge(p, offline ? NaN : value),
    el("span", { class: "v" }, offline ? L("offline") : Number.isFinite(value) ? `${fmt(value)} ${p.eng_unit}` : "-"),
  );
}

window.addEventListener("hw-unauthenticated", () => showLogin());

boot().catch((e) => banner(`${L("failed")}: ${e.message}`, true));
