/* The leaders' summary (/leader): read-only, for a tablet, Vietnamese first. Every number on the
 * page is a field of GET /api/v1/summary/leader, shown as is (the API rounds; the page only
 * formats): each carries data-metric="<path>" and data-value="<the API's value>".
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
  /** A number element: text formatted for the reader, data-value exactly as the API sent it. */
  function metric(tag, path, value, kind, attrs) {
    const text = kind === "pct" ? IOC.fmtPct(value) : kind === "kmh" ? IOC.fmtNum(value, 1) + " km/h" : IOC.fmtNum(value, 0);
    return h(tag, Object.assign({ dataset: { metric: path, value: JSON.stringify(value === undefined ? null : value) } }, attrs || {}), text);
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
    document.getElementById("ld-province").textContent = IOC.pick(s.province, "name", "name_en");
    for (const k of ["cameras", "sensors"]) {
      const a = s[k];
      document.getElementById("kpi-" + k).dataset.level = level(a.now_pct, 95, 85);
      IOC.put(document.getElementById("kpi-" + k + "-foot"),
        metric("b", k + ".available_now", a.available_now, "int", { "data-dynamic": "" }),
        " / ",
        metric("span", k + ".counted", a.counted, "int", { "data-dynamic": "" }),
        " " + t("leader.unit." + k),
        a.in_maintenance ? h("span", { class: "kpi-maint" }, " · ", metric("span", k + ".in_maintenance", a.in_maintenance, "int", { "data-dynamic": "" }), " " + t("leader.inMaint")) : null,
      );
    }
    const c = s.congestion;
    document.getElementById("kpi-congestion").dataset.level = c.index_pct === null ? "na" : c.index_pct <= 10 ? "good" : c.index_pct <= 25 ? "fair" : "poor";
    IOC.put(document.getElementById("kpi-congestion-sub"),
      metric("b", "congestion.congested", c.congested, "int", { "data-dynamic": "" }),
      " / ",
      metric("b", "congestion.reporting", c.reporting, "int", { "data-dynamic": "" }),
      " " + t("leader.points"),
    );
    document.getElementById("kpi-alerts").dataset.level = s.alerts.critical ? "poor" : s.alerts.major ? "fair" : "good";
    IOC.put(document.getElementById("sev-chips"),
      ...["critical", "major", "minor", "info"].map((sev) =>
        h("div", { class: "sev-chip sev-" + sev }, IOC.shapeIcon(sev, 20), metric("b", "alerts." + sev, s.alerts[sev], "int", { "data-dynamic": "" }), h("span", null, t("sev." + sev))),
      ),
    );
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
          h("div", { class: "hot-speed" }, metric("b", "hotspots." + i + ".speed_kmh", p.speed_kmh, "kmh", { "data-dynamic": "" })),
          h(
            "div",
            { class: "hot-meta" },
            IOC.pick(p, "area_name", "area_name_en") + " · ",
            metric("span", "hotspots." + i + ".speed_ratio_pct", p.speed_ratio_pct, "pct", { "data-dynamic": "" }),
            " " + t("leader.ofFree"),
          ),
          h("div", { class: "hot-bar", "aria-hidden": "true" }, h("i", { style: "width:" + Math.min(100, p.speed_ratio_pct) + "%" })),
          p.congested ? h("span", { class: "hot-flag" }, IOC.shapeIcon("major", 14), t("leader.congested")) : null,
        ),
      ),
    );
  }

  function pair(path, a) {
    return h(
      "td",
      { class: "num level-" + level(a.now_pct, 95, 85) },
      metric("b", path + ".now_pct", a.now_pct, "pct", { "data-dynamic": "" }),
      h("span", { class: "sep" }, " / "),
      metric("span", path + ".today_pct", a.today_pct, "pct", { "data-dynamic": "" }),
    );
  }
  function renderAreas(s) {
    IOC.put(document.getElementById("areas"),
      ...s.areas.map((a) =>
        h(
          "tr",
          { dataset: { areaId: a.id } },
          h("th", { scope: "row" }, IOC.pick(a, "name", "name_en")),
          pair("areas." + a.id + ".cameras", a.cameras),
          pair("areas." + a.id + ".sensors", a.sensors),
          h("td", { class: "num" }, metric("b", "areas." + a.id + ".congestion.index_pct", a.congestion.index_pct, "pct", { "data-dynamic": "" })),
          h(
            "td",
            { class: "num" },
            h(
              "span",
              { class: "alerts-cell" },
              a.alerts.total ? IOC.shapeIcon(a.alerts.critical ? "critical" : a.alerts.major ? "major" : "minor", 15) : null,
              metric("b", "areas." + a.id + ".alerts.total", a.alerts.total, "int", { "data-dynamic": "" }),
            ),
          ),
        ),
      ),
    );
  }

  const TREND = [
    ["sensors_pct", "#4fc3f7", "leader.trend.sensors"],
    ["cameras_pct", "#35c06f", "leader.trend.cameras"],
    ["congestion_pct", "#ff9f1a", "leader.trend.congestion"],
  ];
  function drawTrend() {
    const s = state.summary;
    if (!s) return;
    IOC.put(document.getElementById("trend-legend"), ...TREND.map(([, c, k]) => h("span", null, h("i", { style: "background:" + c }), t(k))));
    const ms = s.trend_bucket_minutes * 60e3;
    const first = s.trend.length ? new Date(s.trend[0].time).getTime() : Date.now() - 864e5;
    IOC.chart(document.getElementById("trend"), {
      start: new Date(first),
      end: new Date(first + s.trend.length * ms),
      bucketMs: ms,
      empty: t("chart.empty"),
      series: TREND.map(([k, c]) => ({ color: c, axis: "left", max: 100, width: 2.5, values: s.trend.map((p) => [new Date(p.time).getTime(), p[k]]) })),
    });
  }

  function renderUpdated() {
    const el = document.getElementById("ld-updated");
    if (!state.summary) {
      el.dataset.state = state.failed ? "stale" : "loading";
      el.textContent = state.failed ? t("leader.failed") : t("chart.loading");
      return;
    }
    const stale = Date.now() - state.fetchedAt > STALE_MS;
    el.dataset.state = stale ? "stale" : "fresh";
    el.textContent = t(stale ? "leader.stale" : "leader.updated", { time: I.formatTime(state.summary.generated_at) });
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
