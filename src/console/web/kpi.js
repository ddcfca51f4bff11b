// KPIs: how each enterprise's alarm system performs (EEMUA 191, from
// AlarmService.Stats) and how its gateways report (online rate and data
// completeness, from SiteService.Gateways). Colour only where a figure is
// outside its benchmark.

import { $, L, api, banner, el, enterprises, enumText, fmt, state } from "./core.js";

const RANGES = { day: 86_400_000, week: 7 * 86_400_000, month: 30 * 86_400_000 };
// EEMUA 191: about 1 alarm per 10 minutes on average is acceptable, 2 is
// manageable, more than 10 in 10 minutes is a flood; about 80 % low, 15 %
// medium, 5 % high priority.
const AVERAGE_OK = 1;
const AVERAGE_MANAGEABLE = 2;
const FLOOD = 10;
const PRIORITY_SHARE = { PRIORITY_LOW: 0.8, PRIORITY_MEDIUM: 0.15, PRIORITY_HIGH: 0.05 };

const kpi = { range: "day", stats: [], gateways: null, built: false };

function build() {
  if (kpi.built) return;
  kpi.built = true;
  $("kpis").replaceChildren(
    el("div", { class: "trend-controls" },
      ...Object.keys(RANGES).map((r) => el("button", { "data-kpi-range": r, "data-l": `range_${r}`, onclick: () => { kpi.range = r; load(); } }, L(`range_${r}`))),
    ),
    el("div", { id: "kpi-body" }),
  );
}

/** Shows the view: loads the figures of every enterprise in scope. */
export async function showKpis() {
  build();
  await load();
}

/** Redraws in the current language. */
export function renderKpis() {
  if (!kpi.built) return;
  for (const e of $("kpis").querySelectorAll("[data-l]")) e.textContent = L(e.dataset.l);
  draw();
}

async function load() {
  const to = Date.now();
  const from = to - RANGES[kpi.range];
  try {
    const [stats, gateways] = await Promise.all([
      Promise.all(enterprises().map((e) => api("AlarmService/Stats", { enterprise: e.id, from_ms: from, to_ms: to }))),
      api("SiteService/Gateways", {}),
    ]);
    kpi.stats = stats;
    kpi.gateways = gateways;
  } catch (e) {
    banner(`${L("nav_kpis")} ${L("failed")}: ${e.message}`);
  }
  draw();
}

function pct(x) {
  return `${(100 * Number(x)).toFixed(1)} %`;
}

function figure(label, value, verdict, key) {
  return el("div", { class: `figure ${verdict}`, "data-kpi": key }, el("span", { class: "label" }, label), el("b", {}, value));
}

function draw() {
  const body = $("kpi-body");
  if (!body) return;
  for (const b of document.querySelectorAll("[data-kpi-range]")) b.classList.toggle("current", b.dataset.kpiRange === kpi.range);
  const names = new Map(enterprises().map((e) => [e.id, e.name || e.id]));
  const consoles = kpi.stats.map((s) => {
    const average = Number(s.per_10min_average);
    const peak = Number(s.per_10min_peak);
    const total = s.priorities.reduce((n, p) => n + Number(p.raises), 0);
    return el("section", { class: "kpi-console", "data-enterprise": s.enterprise },
      el("h3", {}, `${names.get(s.enterprise) ?? s.enterprise} (${s.enterprise})`),
      el("div", { class: "figures" },
        figure(L("raises"), String(s.raises), "", "raises"),
        figure(L("per_10min_average"), fmt(average), average > AVERAGE_MANAGEABLE ? "bad" : average > AVERAGE_OK ? "warn" : "", "average"),
        figure(L("per_10min_peak"), String(peak), peak > FLOOD ? "bad" : "", "peak"),
        figure(L("flood_time"), pct(s.flood_fraction), Number(s.flood_fraction) > 0.01 ? "bad" : "", "flood"),
        figure(L("standing"), String(s.standing.length), s.standing.length ? "warn" : "", "standing"),
        figure(L("chattering"), String(s.chattering.length), s.chattering.length ? "warn" : "", "chattering"),
      ),
      el("p", { class: "muted" }, L("eemua_note")),
      el("h4", {}, L("priority_mix")),
      el("table", { class: "kpi-table" },
        el("tr", {}, el("th", {}, L("priority")), el("th", {}, L("raises")), el("th", {}, L("share")), el("th", {}, L("eemua_share"))),
        ...s.priorities.map((p) =>
          el("tr", {},
            el("td", {}, enumText("PRIORITY", p.priority)),
            el("td", { class: "num" }, String(p.raises)),
            el("td", { class: "num" }, total ? pct(Number(p.raises) / total) : "-"),
            el("td", { class: "num" }, PRIORITY_SHARE[p.priority] !== undefined ? pct(PRIORITY_SHARE[p.priority]) : "-"),
          ),
        ),
      ),
      el("h4", {}, L("bad_actors")),
      s.bad_actors.length
        ? el("table", { class: "kpi-table", "data-kpi": "bad-actors" },
            el("tr", {}, el("th", {}, L("alarm")), el("th", {}, L("raises"))),
            ...s.bad_actors.map((b) => el("tr", {}, el("td", {}, b.alarm_id), el("td", { class: "num" }, String(b.raises)))),
          )
        : el("p", { class: "muted" }, "-"),
      s.standing.length ? el("p", {}, `${L("standing")}: ${s.standing.join(", ")}`) : null,
      s.chattering.length ? el("p", {}, `${L("chattering")}: ${s.chattering.join(", ")}`) : null,
    );
  });
  const g = kpi.gateways;
  const gateways = g
    ? el("section", { class: "kpi-console", "data-kpi": "gateways" },
        el("h3", {}, L("gateways")),
        el("p", { class: "muted" }, `${L("since")} ${new Date(Number(g.since_ms)).toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false })}`),
        el("table", { class: "kpi-table" },
          el("tr", {}, el("th", {}, L("enterprise")), el("th", {}, L("online")), el("th", {}, L("online_rate")), el("th", {}, L("completeness"))),
          ...g.enterprises.map((r) =>
            el("tr", { "data-enterprise": r.enterprise },
              el("td", {}, names.get(r.enterprise) ?? r.enterprise),
              el("td", { class: `num ${r.online < r.gateways ? "bad-text" : ""}` }, `${r.online} / ${r.gateways}`),
              el("td", { class: "num" }, pct(r.online_ratio)),
              el("td", { class: "num" }, pct(r.completeness)),
            ),
          ),
        ),
        el("table", { class: "kpi-table" },
          el("tr", {}, el("th", {}, L("gateways")), el("th", {}, L("state")), el("th", {}, L("online_rate")), el("th", {}, L("completeness")), el("th", {}, L("last_heard"))),
          ...g.gateways.map((r) =>
            el("tr", { "data-gateway": r.gateway },
              el("td", {}, r.gateway),
              el("td", { class: r.online ? "" : "bad-text" }, r.online ? L("online") : L("offline")),
              el("td", { class: "num" }, pct(r.online_ratio)),
              el("td", { class: "num" }, pct(r.completeness)),
              el("td", { class: "num" }, Number(r.last_ms) ? new Date(Number(r.last_ms)).toLocaleTimeString() : "-"),
            ),
          ),
        ),
      )
    : null;
  body.replaceChildren(...consoles, gateways);
}
