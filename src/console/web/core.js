// What every view of the console shares: its state, its words in two
// languages, building the page's elements (text from the service is only
// ever set as text), and the API.

import { LABELS, ENUMS } from "./labels.js";

export const $ = (id) => document.getElementById(id);

// The alarm feed and list show suppressed, shelved and out-of-service
// alarms too: the list counts them and hides them unless asked.
export const FEED_FILTER = { include_suppressed: true, include_shelved: true };
export const PRIORITY_RANK = { PRIORITY_CRITICAL: 4, PRIORITY_HIGH: 3, PRIORITY_MEDIUM: 2, PRIORITY_LOW: 1 };

export const state = {
  me: null,
  texts: null,
  lang: localStorage.getItem("hw.lang") || (navigator.language.startsWith("zh") ? "zh" : "en"),
  site: null,
  alarms: new Map(), // alarm_id -> row
  lastSeq: 0, // the last feed event applied: each is applied once
  feed: null,
  risk: new Map(), // hazard source id -> { colour, reasons }
  muted: false,
  showHidden: false,
  detail: null, // hazard source shown in the map's detail panel
  rowTimes: [], // { id, seq, eventTime, shown }: raise to row, for measurement
  applied: [], // the sequence numbers of the feed events applied, in order
  started: false,
};
// For diagnostics and the browser tests (raise-to-row timing).
window.hw = state;

// ---------------------------------------------------------------- words

export function L(key) {
  return LABELS[state.lang][key] ?? LABELS.en[key] ?? key;
}

/** An enum's wire name (`PRIORITY_HIGH`) in the current language. */
export function enumText(kind, wire) {
  const short = String(wire).replace(kind + "_", "");
  return ENUMS[state.lang][kind]?.[short] ?? short;
}

/** A message template rendered with its parameters (hazardwatch_alarms::text). */
export function message(key, params, flags = {}) {
  const t = state.texts;
  const template = t?.templates[key];
  if (!template) return key || "";
  let out = template[state.lang].replace(/\{([^{}]*)\}/g, (whole, name) => {
    const value = params?.[name];
    if (value === undefined) return whole;
    const of = t.term_params[name];
    if (!of) return value;
    const term = t.terms.find((x) => x.of === of && x.value === value);
    return term ? term[state.lang] : value;
  });
  for (const flag of ["latched", "suppressed", "backfilled"]) {
    if (flags[flag]) out += t.notes[flag][state.lang];
  }
  return out;
}

export function applyLabels() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  document.title = L("title");
  for (const e of document.querySelectorAll("[data-l]")) e.textContent = L(e.dataset.l);
  $("lang").textContent = state.lang === "zh" ? "English" : "中文";
  $("mute").textContent = state.muted ? L("unmute") : L("mute");
  $("operator").placeholder = L("operator_hint");
}

// ---------------------------------------------------------------- DOM

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  for (const c of children.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function svg(tag, attrs = {}, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(e, attrs);
  for (const c of children.flat()) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

export function setAttrs(e, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.setAttribute("class", v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
}

export function time(ms) {
  const d = new Date(Number(ms));
  return isNaN(d) ? "" : d.toLocaleTimeString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

/** A double from the JSON mapping: NaN travels as null (or "NaN"). */
export function num(v) {
  return v === null || v === undefined ? NaN : Number(v);
}

export function fmt(v) {
  const n = Number(v);
  if (!Number.isFinite(n)) return "-";
  return Math.abs(n) >= 100 ? n.toFixed(1) : n.toFixed(2);
}

let bannerTimer;
export function banner(text, sticky = false) {
  const b = $("banner");
  b.textContent = text;
  b.hidden = !text;
  clearTimeout(bannerTimer);
  if (text && !sticky) bannerTimer = setTimeout(() => (b.hidden = true), 8000);
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(method, body = {}) {
  const r = await fetch("/api/v1/" + method, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => ({}));
  if (r.status === 401) window.dispatchEvent(new Event("hw-unauthenticated"));
  if (!r.ok) throw new ApiError(r.status, data.code || "", data.message || r.statusText);
  return data;
}

/** A point of the site model with its enterprise, hazard source and unit. */
export function findPoint(id) {
  for (const e of enterprises()) {
    for (const h of e.hazard_sources) {
      for (const u of h.units) {
        const p = u.points.find((x) => x.id === id);
        if (p) return { e, h, u, p };
      }
    }
  }
  return null;
}

export function enterprises() {
  return state.site?.enterprises ?? [];
}

export function priorityShape(p) {
  const rank = PRIORITY_RANK[p] ?? 0;
  // Rank 4 (critical) shows "1": operators number priorities from the top.
  return el("span", { class: `prio p${rank}`, title: enumText("PRIORITY", p), "data-priority": p }, rank ? String(5 - rank) : "-");
}
