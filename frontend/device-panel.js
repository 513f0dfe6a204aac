/* The device panel of the operator map: current state with the reason, latest values, open
 * alerts, maintenance (start / end), the last 6 hours as a chart and, for a camera, its latest
 * picture. Escape closes it and gives the focus back.
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const t = I.t;
  const h = IOC.h;
  const SERIES_MS = 60e3;
  const THUMB_MS = 10e3;
  const HOURS = 6;

  function DevicePanel(o) {
    const el = o.el;
    let id = null;
    let series = null;
    let seriesTimer = null;
    let thumbTimer = null;
    let returnFocus = null;
    let maintForm = false;

    el.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") close();
    });

    function row(label, value) {
      return [h("dt", null, label), h("dd", null, value)];
    }

    function values(dev) {
      const last = dev.last || {};
      const out = [];
      if (dev.kind === "traffic_sensor") {
        out.push(row(t("dev.speed"), IOC.fmtNum(last.speed_kmh) + " " + t("unit.kmh")));
        out.push(row(t("dev.intensity"), IOC.fmtNum(last.intensity, 0) + " " + t("unit.veh")));
        if (last.occupancy !== null && last.occupancy !== undefined) out.push(row(t("dev.occupancy"), IOC.fmtNum(last.occupancy * 100, 0) + " %"));
        if (last.interval_s) out.push(row(t("dev.interval"), IOC.fmtNum(last.interval_s, 0) + " s"));
      } else if (dev.kind === "camera") {
        out.push(row(t("dev.health"), last.status ? t("health." + last.status) : "–"));
        out.push(row(t("dev.fps"), IOC.fmtNum(last.fps)));
      }
      out.push(row(t("dev.lastSeen"), dev.last_seen ? I.formatTime(dev.last_seen) + " (" + IOC.ago(dev.last_seen) + ")" : t("dev.never")));
      return out;
    }

    function maintenance(dev) {
      const m = o.maintenanceOf(dev);
      if (m) {
        return h(
          "div",
          { class: "dp-maint on" },
          IOC.stateBadge("maintenance"),
          h("span", null, " " + t("maint.until", { time: I.formatTime(m.ends_at) }) + (m.reason ? " — " + m.reason : "")),
          m.device_id && IOC.can("maintenance")
            ? h("button", { type: "button", class: "act-btn", onclick: () => endMaintenance(m.id) }, t("maint.end"))
            : null,
        );
      }
      if (dev.kind === "site" || !IOC.can("maintenance")) return null;
      if (!maintForm) {
        return h("div", { class: "dp-maint" }, h("button", { type: "button", class: "act-btn", onclick: () => ((maintForm = true), refresh(), focusForm()) }, t("act.maint")));
      }
      const reason = h("input", { type: "text", name: "reason", required: true, maxlength: "500", "aria-label": t("act.maint.label"), placeholder: t("act.maint.placeholder") });
      const dur = h("select", { name: "minutes", "aria-label": t("act.maint.duration") }, [30, 60, 120, 240, 480, 1440].map((m) => h("option", { value: m, selected: m === 120 ? true : null }, t("dur." + m))));
      return h(
        "form",
        {
          class: "ai-form dp-maint-form",
          onsubmit: async (ev) => {
            ev.preventDefault();
            try {
              await IOC.send("POST", "/maintenance", {
                device_id: dev.id,
                ends_at: new Date(Date.now() + Number(dur.value) * 60e3).toISOString(),
                reason: reason.value.trim(),
              });
              maintForm = false;
              o.onChanged();
            } catch (err) {
              o.toast(t("act.failed", { msg: err.message }));
            }
          },
        },
        h("label", { class: "ai-form-label" }, t("act.maint.label")),
        dur,
        reason,
        h(
          "div",
          { class: "ai-form-buttons" },
          h("button", { type: "submit", class: "ack-like" }, t("act.maint.submit")),
          h("button", { type: "button", class: "act-btn", onclick: () => ((maintForm = false), refresh()) }, t("act.cancel")),
        ),
      );
    }

    function focusForm() {
      const f = el.querySelector(".dp-maint-form select");
      if (f) f.focus();
    }

    async function endMaintenance(mid) {
      try {
        await IOC.send("DELETE", "/maintenance/" + mid);
        o.onChanged();
      } catch (err) {
        o.toast(t("act.failed", { msg: err.message }));
      }
    }

    function alertsList(dev) {
      const list = o.openAlerts(dev.id);
      if (!list.length) return null;
      return h(
        "section",
        { class: "dp-section" },
        h("h3", null, t("dev.alerts")),
        h(
          "ul",
          { class: "dp-alerts" },
          list.map((a) =>
            h(
              "li",
              { class: "sev-" + a.severity },
              h("span", { class: "sev-badge" }, t("sev." + a.severity)),
              " " + IOC.pick(a, "title", "title_en") + " · " + t("status." + a.status),
            ),
          ),
        ),
      );
    }

    function chartSection(dev) {
      if (dev.kind === "site") return null;
      const legend =
        dev.kind === "camera"
          ? [["#4fc3f7", t("chart.fps")], ["#35c06f", t("chart.health")]]
          : [["#4fc3f7", t("chart.speed")], ["#ffb347", t("chart.vehicles")], ["#c58af9", t("chart.occupancy")]];
      return h(
        "section",
        { class: "dp-section" },
        h("h3", null, t("chart.title", { n: HOURS })),
        h("div", { class: "chart-legend" }, legend.map(([c, label]) => h("span", null, h("i", { style: "background:" + c }), label))),
        h("canvas", { class: "dp-chart", role: "img", "aria-label": t("chart.title", { n: HOURS }) }),
      );
    }

    function drawChart() {
      const canvas = el.querySelector(".dp-chart");
      const dev = id && o.getDevice(id);
      if (!canvas || !dev) return;
      const s = series && series.device_id === id ? series : null;
      const pts = s ? s.points : [];
      const at = (k) => pts.map((p) => [new Date(p.time).getTime(), p[k]]);
      const common = {
        start: s ? new Date(s.start) : new Date(Date.now() - HOURS * 3600e3),
        end: s ? new Date(s.end) : new Date(),
        bucketMs: (s ? s.bucket_minutes : 5) * 60e3,
        empty: s ? t("chart.empty") : t("chart.loading"),
      };
      if (dev.kind === "camera") {
        IOC.chart(canvas, Object.assign(common, {
          series: [{ color: "#4fc3f7", values: at("fps"), axis: "left" }],
          band: { values: at("ok_pct") },
        }));
      } else {
        IOC.chart(canvas, Object.assign(common, {
          series: [
            { color: "#ffb347", values: at("vehicles"), axis: "right", type: "bars" },
            { color: "#4fc3f7", values: at("speed_kmh"), axis: "left" },
            { color: "#c58af9", values: at("occupancy_pct"), axis: "left", dash: [4, 3], width: 1.6 },
          ],
        }));
      }
    }

    async function loadSeries() {
      const want = id;
      try {
        const s = await IOC.getJSON("devices/" + encodeURIComponent(want) + "/series?hours=" + HOURS);
        if (want === id) {
          series = s;
          drawChart();
        }
      } catch (err) {
        console.warn("series", err);
      }
    }

    async function loadThumb() {
      const img = el.querySelector(".dp-thumb img");
      if (!img) return;
      const want = id;
      try {
        const res = await IOC.apiFetch(IOC.API + "/cameras/" + encodeURIComponent(want) + "/thumbnail.jpg", { cache: "no-store" });
        if (want !== id) return;
        const fig = el.querySelector(".dp-thumb");
        const cap = el.querySelector(".dp-thumb figcaption");
        if (!fig || !cap) return;
        fig.classList.toggle("no-permission", res.status === 403);
        if (!res.ok) {
          if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
          delete img.dataset.url;
          img.removeAttribute("src");
          img.hidden = true;
          // Not allowed to see pictures (a leader): say so plainly, and stop asking.
          cap.textContent = res.status === 403 ? t("thumb.forbidden") : t("thumb.none");
          if (res.status === 403) clearInterval(thumbTimer);
          return;
        }
        const blob = await res.blob();
        const url = URL.createObjectURL(blob);
        const old = img.dataset.url;
        img.onload = () => old && URL.revokeObjectURL(old);
        img.src = url;
        img.dataset.url = url;
        img.hidden = false;
        const taken = res.headers.get("X-Taken-At");
        cap.textContent = taken ? t("thumb.taken", { time: I.formatTime(taken), ago: IOC.ago(taken) }) : "";
      } catch (err) {
        console.warn("thumbnail", err);
      }
    }

    function render() {
      const dev = id && o.getDevice(id);
      if (!dev) return;
      const st = o.stateOf(dev);
      const keepThumb = el.querySelector(".dp-thumb");
      if (keepThumb && keepThumb.classList.contains("no-permission")) keepThumb.querySelector("figcaption").textContent = t("thumb.forbidden");
      const body = [
        h(
          "header",
          { class: "dp-head" },
          h(
            "div",
            null,
            h("div", { class: "dp-kind" }, t("kind." + dev.kind)),
            h("h2", { id: "dp-title" }, dev.name || dev.id),
            h("div", { class: "dp-id" }, dev.id + " · " + o.areaName(dev.area_id)),
          ),
          h("button", { type: "button", class: "dp-close", "aria-label": t("panel.close"), title: t("panel.close"), onclick: close }, "×"),
        ),
        h("div", { class: "dp-state" }, IOC.stateBadge(st), h("div", { class: "dp-reason" }, IOC.pick(dev, "reason", "reason_en"))),
        maintenance(dev),
        h("dl", { class: "dp-values" }, values(dev)),
        alertsList(dev),
        dev.kind === "camera"
          ? keepThumb || h("figure", { class: "dp-thumb" }, h("img", { alt: t("thumb.alt", { name: dev.name }), hidden: true }), h("figcaption", null, t("chart.loading")))
          : null,
        chartSection(dev),
      ];
      IOC.put(el, ...body.filter(Boolean));
      el.dataset.deviceId = dev.id;
      drawChart();
    }

    function refresh() {
      // Not while someone types in the maintenance form: the next refresh catches up.
      const typing = el.contains(document.activeElement) && document.activeElement.matches("input, select, textarea");
      if (id && !el.hidden && !typing) render();
    }

    function open(deviceId) {
      const changed = deviceId !== id;
      if (el.hidden) returnFocus = document.activeElement;
      id = deviceId;
      if (changed) {
        series = null;
        maintForm = false;
        IOC.put(el);
      }
      el.hidden = false;
      render();
      el.focus({ preventScroll: true });
      if (changed) {
        loadSeries();
        loadThumb();
      }
      clearInterval(seriesTimer);
      clearInterval(thumbTimer);
      seriesTimer = setInterval(loadSeries, SERIES_MS);
      thumbTimer = setInterval(loadThumb, THUMB_MS);
    }

    function close() {
      if (el.hidden) return;
      const img = el.querySelector(".dp-thumb img");
      if (img && img.dataset.url) URL.revokeObjectURL(img.dataset.url);
      clearInterval(seriesTimer);
      clearInterval(thumbTimer);
      el.hidden = true;
      IOC.put(el);
      id = null;
      o.onClose();
      if (returnFocus && returnFocus.isConnected) returnFocus.focus();
    }

    I.onChange(() => refresh());
    window.addEventListener("resize", drawChart);
    return {
      open,
      close,
      refresh,
      get id() {
        return id;
      },
    };
  }

  IOC.DevicePanel = DevicePanel;
})();
