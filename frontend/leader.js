/* The leaders' summary (/leader): read-only, for a tablet, Vietnamese first. Every number on the
 * page is a field of GET /api/v1/summary/leader, shown as is (the API rounds; the page only
 * formats): each carries data-metric="<path>" and data-value="<the API's value>". Every headline
 * figure has last week's beside it (the API's kpis.*): the change with an arrow, and whether
 * that is better or worse said in words (title) as well as by colour.
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const t = I.t;
  const h = IOC.h;
  const POLL_MS = 30000;
  const STALE_MS = 90000;

  const state = { summary: null, fetchedAt: null, failed: false, loads: 0 };
  window.leaderState = state;

  const dateFmt = () =>
    new Intl.DateTimeFormat(I.lang === "vi" ? "vi-VN" : "en-GB", { timeZone: I.TZ, weekday: "long", day: "numeric", month: "long", year: "numeric" });
  const hm = new Intl.DateTimeFormat("vi-VN", { timeZone: I.TZ, hour: "2-digit", minute: "2-digit", hour12: false });

  function get(obj, path) {
    return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
  }
  /** A number element: text formatted for the reader, data-value exactly as the API sent it.
   *  kind: "pct" (12,5 %), "kmh", "pts" (a change of a percentage: +2,1 điểm), "delta" (+12),
   *  anything else a whole number. */
  function metric(tag, path, value, kind, attrs) {
    const signed = (v, d) => (v > 0 ? "+" : "") + IOC.fmtNum(v, d);
    const none = value === null || value === undefined;
    const text =
      kind === "pct" ? IOC.fmtPct(value)
      : kind === "kmh" ? (none ? "–" : IOC.fmtNum(value, 1) + " km/h")
      : kind === "pts" ? (none ? "–" : signed(value, 1) + " " + t("leader.pts"))
      : kind === "dkmh" ? (none ? "–" : signed(value, 1) + " km/h")
      : kind === "delta" ? (none ? "–" : signed(value, 0))
      : IOC.fmtNum(value, 0);
    return h(tag, Object.assign({ dataset: { metric: path, value: JSON.stringify(none ? null : value) } }, attrs || {}), text);
  }
  const DYN = { "data-dynamic": "" };
  const CHANGE = { pct: "pts", kmh: "dkmh", int: "delta" };
  /** Last week beside a KPI (kpis.<name>): "▲ +2,1 điểm · tuần trước 93,2 %". ``upIsGood``
   *  decides the words (title) and the colour of better / worse; the arrow is the direction. */
  function compare(id, name, kind, upIsGood) {
    const el = document.getElementById(id);
    const k = state.summary.kpis[name];
    const path = "kpis." + name;
    if (k.last_week === null || k.last_week === undefined) {
      IOC.put(el, h("span", { class: "cmp-none" }, t("leader.lw.none")));
      el.dataset.judged = "na";
      return;
    }
    const dir = k.change === null ? "na" : k.change > 0 ? "up" : k.change < 0 ? "down" : "same";
    const judged = dir === "same" || dir === "na" ? dir : (dir === "up") === upIsGood ? "better" : "worse";
    el.dataset.judged = judged;
    el.title = t("leader.judged." + judged);
    IOC.put(el,
      h("span", { class: "cmp-arrow", "aria-hidden": "true" }, { up: "▲", down: "▼", same: "=", na: "" }[dir]),
      metric("b", path + ".change", k.change, CHANGE[kind], DYN),
      h("span", { class: "cmp-lw" }, " · " + t("leader.lw") + " ", metric("span", path + ".last_week", k.last_week, kind, DYN)),
    );
  }
  function fillStatic(s) {
    document.querySelectorAll("main [data-metric]:not([data-dynamic])").forEach((el) => {
      const path = el.dataset.metric;
      const v = get(s, path);
      el.dataset.value = JSON.stringify(v === undefined ? null : v);
      el.textContent = path.endsWith("_pct") ? IOC.fmtPct(v) : IOC.fmtNum(v, 0);
    });
  }
  function level(pct, good, fair) {
    return pct === null || pct === undefined ? "na" : pct >= good ? "good" : pct >= fair ? "fair" : "poor";
  }

  function render() {
    const s = state.summary;
    if (!s) return;
    fillStatic(s);
    document.getElementById("ld-province").textContent = IOC.pick(s.scope, "name", "name_en");
    for (const k of ["cameras", "sensors"]) {
      const a = s[k];
      document.getElementById("kpi-" + k).dataset.level = level(a.now_pct, 95, 85);
      compare("cmp-" + k + "-now", k + "_now_pct", "pct", true);
      compare("cmp-" + k + "-today", k + "_today_pct", "pct", true);
      IOC.put(document.getElementById("kpi-" + k + "-foot"),
        metric("b", k + ".available_now", a.available_now, "int", DYN),
        " / ",
        metric("span", k + ".counted", a.counted, "int", DYN),
        " " + t("leader.unit." + k),
        a.in_maintenance ? h("span", { class: "kpi-maint" }, " · ", metric("span", k + ".in_maintenance", a.in_maintenance, "int", DYN), " " + t("leader.inMaint")) : null,
      );
    }
    const c = s.congestion;
    document.getElementById("kpi-congestion").dataset.level = c.index_pct === null ? "na" : c.index_pct <= 10 ? "good" : c.index_pct <= 25 ? "fair" : "poor";
    compare("cmp-congestion", "congestion_pct", "pct", false);
    IOC.put(document.getElementById("kpi-congestion-sub"),
      metric("b", "congestion.congested", c.congested, "int", DYN),
      " / ",
      metric("b", "congestion.reporting", c.reporting, "int", DYN),
      " " + t("leader.points"),
    );
    document.getElementById("kpi-congestion-window").textContent =
      "· " + t("leader.window", { from: hm.format(new Date(c.window_start)), to: hm.format(new Date(c.window_end)) });
    document.getElementById("kpi-alerts").dataset.level = s.alerts.critical ? "poor" : s.alerts.major ? "fair" : "good";
    compare("cmp-alerts", "alerts_open", "int", false);
    IOC.put(document.getElementById("sev-chips"),
      ...["critical", "major", "minor", "info"].map((sev) =>
        h("div", { class: "sev-chip sev-" + sev }, IOC.shapeIcon(sev, 20), metric("b", "alerts." + sev, s.alerts[sev], "int", DYN), h("span", null, t("sev." + sev))),
      ),
    );
    const opened = s.kpis.alerts_opened_today;
    IOC.put(document.getElementById("kpi-alerts-foot"),
      t("leader.opened") + " ",
      metric("b", "kpis.alerts_opened_today.value", opened.value, "int", DYN),
      " · " + t("leader.lw") + " ",
      metric("span", "kpis.alerts_opened_today.last_week", opened.last_week, "int", DYN),
    );
    compare("cmp-vehicles", "vehicles_today", "int", true);
    IOC.put(document.getElementById("kpi-speed"), metric("span", "kpis.speed_kmh_today.value", s.kpis.speed_kmh_today.value, "kmh", DYN));
    compare("cmp-speed", "speed_kmh_today", "kmh", true);
    renderHotspots(s);
    renderAreas(s);
    drawTrend();
    renderUpdated();
  }

  function renderHotspots(s) {
    const ol = document.getElementById("hotspots");
    if (!s.hotspots.length) {
      IOC.put(ol, h("li", { class: "empty" }, t("leader.noHotspots")));
      return;
    }
    IOC.put(ol,
      ...s.hotspots.map((p, i) =>
        h(
          "li",
          { class: p.congested ? "hot congested" : "hot", dataset: { deviceId: p.device_id } },
          h("span", { class: "hot-rank" }, String(i + 1)),
          h("b", { class: "hot-name" }, p.name),
          h("div", { class: "hot-speed" }, metric("b", "hotspots." + i + ".speed_kmh", p.speed_kmh, "kmh", DYN)),
          h(
            "div",
            { class: "hot-meta" },
            IOC.pick(p, "area_name", "area_name_en") + " · ",
            metric("span", "hotspots." + i + ".speed_ratio_pct", p.speed_ratio_pct, "pct", DYN),
            " " + t("leader.ofFree"),
            p.last_week_speed_kmh === null
              ? null
              : [" · " + t("leader.lw") + " ", metric("span", "hotspots." + i + ".last_week_speed_kmh", p.last_week_speed_kmh, "kmh", DYN)],
          ),
          h("div", { class: "hot-bar", "aria-hidden": "true" }, h("i", { style: "width:" + Math.min(100, p.speed_ratio_pct) + "%" })),
          p.congested ? h("span", { class: "hot-flag" }, IOC.shapeIcon("major", 14), t("leader.congested")) : null,
        ),
      ),
    );
  }

  /** A small "▲ +1,2" under an area's figure: its change against last week (kpis.<name>);
   *  nothing when there is no comparison or no change (the table stays quiet). */
  function areaChange(a, name, upIsGood) {
    const k = a.kpis[name];
    if (k.change === null || k.change === 0) return null;
    const dir = k.change === null ? "na" : k.change > 0 ? "up" : k.change < 0 ? "down" : "same";
    const judged = dir === "same" || dir === "na" ? dir : (dir === "up") === upIsGood ? "better" : "worse";
    return h(
      "small",
      { class: "cmp-cell", dataset: { judged }, title: t("leader.judged." + judged) },
      h("span", { "aria-hidden": "true" }, { up: "▲ ", down: "▼ ", same: "= ", na: "" }[dir]),
      metric("span", "areas." + a.id + ".kpis." + name + ".change", k.change, "pts", DYN),
    );
  }
  function pair(a, kind) {
    const path = "areas." + a.id + "." + kind;
    const v = a[kind];
    return h(
      "td",
      { class: "num level-" + level(v.now_pct, 95, 85) },
      metric("b", path + ".now_pct", v.now_pct, "pct", DYN),
      h("span", { class: "sep" }, " / "),
      metric("span", path + ".today_pct", v.today_pct, "pct", DYN),
      areaChange(a, kind + "_today_pct", true),
    );
  }
  function renderAreas(s) {
    IOC.put(document.getElementById("areas"),
      ...s.areas.map((a) =>
        h(
          "tr",
          { dataset: { areaId: a.id } },
          h("th", { scope: "row" }, IOC.pick(a, "name", "name_en")),
          pair(a, "cameras"),
          pair(a, "sensors"),
          h("td", { class: "num" }, metric("b", "areas." + a.id + ".congestion.index_pct", a.congestion.index_pct, "pct", DYN), areaChange(a, "congestion_pct", false)),
          h(
            "td",
            { class: "num" },
            h(
              "span",
              { class: "alerts-cell" },
              a.alerts.total ? IOC.shapeIcon(a.alerts.critical ? "critical" : a.alerts.major ? "major" : "minor", 15) : null,
              metric("b", "areas." + a.id + ".alerts.total", a.alerts.total, "int", DYN),
            ),
          ),
        ),
      ),
    );
  }

  const TREND = [
    ["sensors_pct", "#4fc3f7", "leader.trend.sensors", null],
    ["cameras_pct", "#35c06f", "leader.trend.cameras", null],
    ["congestion_pct", "#ff9f1a", "leader.trend.congestion", null],
    ["last_week_congestion_pct", "#ff9f1a", "leader.trend.congestionLw", [5, 4]],
  ];
  function drawTrend() {
    const s = state.summary;
    if (!s) return;
    IOC.put(document.getElementById("trend-legend"),
      ...TREND.map(([, c, k, dash]) => h("span", null, h("i", { class: dash ? "dashed" : null, style: dash ? "border-color:" + c : "background:" + c }), t(k))),
    );
    const ms = s.trend_bucket_minutes * 60e3;
    const first = s.trend.length ? new Date(s.trend[0].time).getTime() : Date.now() - 864e5;
    IOC.chart(document.getElementById("trend"), {
      start: new Date(first),
      end: new Date(first + s.trend.length * ms),
      bucketMs: ms,
      empty: t("chart.empty"),
      series: TREND.map(([k, c, , dash]) => ({ color: c, axis: "left", max: 100, width: dash ? 1.5 : 2.5, dash: dash, values: s.trend.map((p) => [new Date(p.time).getTime(), p[k]]) })),
    });
  }

  function renderUpdated() {
    const el = document.getElementById("ld-updated");
    const s = state.summary;
    if (!s) {
      el.dataset.state = state.failed ? "stale" : "loading";
      el.textContent = state.failed ? t("leader.failed") : t("chart.loading");
      return;
    }
    // Stale: the page could not reach the API lately, or the rollups are behind (the API says).
    const stale = Date.now() - state.fetchedAt > STALE_MS;
    el.dataset.state = stale || s.rollups_stale ? "stale" : "fresh";
    const asOf = { time: I.formatTime(s.as_of) };
    el.textContent = stale
      ? t("leader.stale", { time: I.formatTime(s.generated_at) })
      : s.rollups_stale
        ? t("leader.rollupsLate", asOf)
        : t("leader.updated", { time: I.formatTime(s.generated_at) }) + " · " + t("leader.asOf", asOf);
  }

  async function load() {
    try {
      state.summary = await IOC.getJSON("summary/leader");
      state.fetchedAt = Date.now();
      state.failed = false;
      state.loads++;
      render();
    } catch (err) {
      state.failed = true;
      renderUpdated();
    }
  }

  function tickDate() {
    document.getElementById("clock").textContent = hm.format(new Date());
    document.getElementById("ld-date").textContent = dateFmt().format(new Date());
  }

  I.applyStatic();
  IOC.langToggle(document.getElementById("lang-toggle"));
  I.onChange(() => {
    tickDate();
    render();
  });
  document.getElementById("ld-refresh").addEventListener("click", load);
  window.addEventListener("resize", drawTrend);
  tickDate();
  setInterval(tickDate, 10000);
  setInterval(renderUpdated, 5000);
  renderUpdated();
  IOC.UserMenu(document.getElementById("user-menu"));
  IOC.auth.start().then(() => {
    setInterval(load, POLL_MS);
    load();
  });
})();
