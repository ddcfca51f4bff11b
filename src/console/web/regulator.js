// Disposal (the regulators' view): the alarms that wait for a disposal
// record (or were escalated and disposed, until they close) and have
// reached the caller's place on the escalation chain, each
// with its timeline (raised, acknowledged, escalated to the park, the
// county, ...) from AlarmService.History, and its disposal record or, for
// an operator, the form to record it; below, the disposal records of the
// last day.

import { $, L, PRIORITY_RANK, api, banner, el, enumText, message, priorityShape, state } from "./core.js";

const LEVELS = ["ESCALATION_LEVEL_ENTERPRISE", "ESCALATION_LEVEL_PARK", "ESCALATION_LEVEL_COUNTY", "ESCALATION_LEVEL_CITY", "ESCALATION_LEVEL_PROVINCE"];
const TIMELINE_PAGES = 5;

const DISPOSED_WINDOW_MS = 86_400_000;

const view = { timelines: new Map(), pending: new Set(), disposed: [] };

/** The caller's place on the escalation chain, as the feed names levels. */
function myLevel() {
  return Math.max(0, LEVELS.indexOf(`ESCALATION_LEVEL_${String(state.me?.level ?? "enterprise").toUpperCase()}`));
}

/** The alarms that wait for disposal, or were escalated, and have reached
 * the caller's level (a disposed one stays until it closes). */
function waiting() {
  return [...state.alarms.values()]
    .filter((r) => (r.awaiting || LEVELS.indexOf(r.escalation) > 0) && Math.max(0, LEVELS.indexOf(r.escalation)) >= myLevel())
    .sort((a, b) => LEVELS.indexOf(b.escalation) - LEVELS.indexOf(a.escalation) || (PRIORITY_RANK[b.priority] ?? 0) - (PRIORITY_RANK[a.priority] ?? 0) || a.raised - b.raised);
}

/** Shows the view and loads the timelines. */
export async function showRegulator() {
  await Promise.all([...waiting().map((r) => timeline(r)), loadDisposed()]);
  renderRegulator();
}

/** The disposal records of the last day at the caller's level or beyond. */
async function loadDisposed() {
  const records = [];
  let token = "";
  try {
    for (let page = 0; page < TIMELINE_PAGES; page++) {
      const h = await api("AlarmService/History", {
        filter: { min_escalation: LEVELS[myLevel()], include_suppressed: true, include_shelved: true },
        from_ms: Date.now() - DISPOSED_WINDOW_MS,
        page_size: 1000,
        page_token: token,
      });
      records.push(...h.events.filter((e) => e.transition === "TRANSITION_DISPOSED"));
      token = h.next_page_token;
      if (!token) break;
    }
  } catch (e) {
    banner(`${L("nav_regulator")} ${L("failed")}: ${e.message}`);
  }
  view.disposed = records.reverse();
}

/** A disposal on the feed: first in the list of records. */
export function noteDisposed(e) {
  if (Math.max(0, LEVELS.indexOf(e.escalation_level)) < myLevel()) return;
  view.disposed.unshift(e);
}

/** An alarm's events since it was raised (History, by its hazard source). */
async function timeline(r) {
  if (view.pending.has(r.id)) return;
  view.pending.add(r.id);
  const events = [];
  let token = "";
  try {
    for (let page = 0; page < TIMELINE_PAGES; page++) {
      const h = await api("AlarmService/History", {
        filter: { hazard_sources: [r.hazard_source], include_suppressed: true, include_shelved: true },
        from_ms: r.raised - 1000,
        page_size: 1000,
        page_token: token,
      });
      events.push(...h.events.filter((e) => e.alarm_id === r.id));
      token = h.next_page_token;
      if (!token) break;
    }
  } catch (e) {
    banner(`${L("nav_regulator")} ${L("failed")}: ${e.message}`);
  }
  view.timelines.set(r.id, { seq: r.seq, events });
  view.pending.delete(r.id);
}

/** Redraws (after a feed event, or in another language). */
export function renderRegulator() {
  const box = $("regulator");
  if (!box || $("view-regulator").hidden) return;
  const rows = waiting();
  // An alarm whose latest event is newer than its timeline: fetch again.
  const missing = rows.filter((r) => view.timelines.get(r.id)?.seq !== r.seq);
  if (missing.length) Promise.all(missing.map(timeline)).then(renderRegulator);
  const locale = state.lang === "zh" ? "zh-CN" : "en-GB";
  box.replaceChildren(
    el("p", { class: "muted" }, `${L("disposal_scope")}: ${enumText("ESCALATION_LEVEL", LEVELS[myLevel()])}`),
    ...(rows.length ? rows.map(card) : [el("p", { id: "no-disposals" }, L("no_disposals"))]),
    el("h3", {}, L("disposed_recently")),
    view.disposed.length
      ? el("ul", { class: "timeline", id: "disposed" },
          ...view.disposed.map((e) =>
            el("li", { "data-alarm": e.alarm_id, "data-seq": String(e.seq) },
              el("span", { class: "when" }, new Date(Number(e.event_time_ms)).toLocaleString(locale, { hour12: false })),
              " ",
              message(e.text_key, e.text_params, e),
            ),
          ),
        )
      : el("p", { class: "muted" }, "-"),
  );
}

function card(r) {
  const events = view.timelines.get(r.id)?.events ?? [];
  const canDispose = state.me && (state.me.role === "operator" || state.me.role === "admin");
  const cause = el("textarea", { rows: 2, maxlength: 1000, placeholder: L("cause") });
  const action = el("textarea", { rows: 2, maxlength: 1000, placeholder: L("action_taken") });
  return el("section", { class: "disposal", "data-alarm": r.id },
    el("h3", {}, priorityShape(r.priority), " ", r.id, " ",
      el("span", { class: "flag" }, `${L("escalated_to")}: ${enumText("ESCALATION_LEVEL", r.escalation)}`)),
    el("p", {}, r.text_key ? message(r.text_key, r.text_params, r) : r.message),
    el("ol", { class: "timeline" },
      ...events.map((e) =>
        el("li", { "data-transition": e.transition },
          el("span", { class: "when" }, new Date(Number(e.event_time_ms)).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false })),
          " ",
          message(e.text_key, e.text_params, e),
          e.comment && e.transition !== "TRANSITION_DISPOSED" ? el("span", { class: "muted" }, ` · ${e.comment}`) : null,
        ),
      ),
    ),
    !r.awaiting
      ? el("p", { class: "disposed" }, L("disposed_note"))
      : canDispose
      ? el("div", { class: "dispose-form" },
          el("label", {}, L("cause"), cause),
          el("label", {}, L("action_taken"), action),
          el("button", {
            "data-action": "dispose",
            onclick: async () => {
              const operator = $("operator").value.trim();
              if (!operator) {
                banner(L("operator_first"));
                $("operator").focus();
                return;
              }
              try {
                await api("AlarmService/Dispose", { alarm_id: r.id, operator, cause: cause.value.trim(), action: action.value.trim() });
              } catch (e) {
                banner(`${L("dispose")} ${L("failed")}: ${e.message}`);
              }
            },
          }, L("dispose")),
        )
      : el("p", { class: "muted" }, L("viewer_only")),
  );
}
