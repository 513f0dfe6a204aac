/* A small time-series chart on a canvas (device panel, leader trend): lines and bars over a time
 * axis in Vietnam time, up to two value axes, gaps where data is missing. The legend is the
 * caller's (DOM, translated); the canvas gets an aria-label from the caller too.
 *
 * IOC.chart(canvas, {start, end, bucketMs, series: [{color, axis: "left"|"right", type: "line"|"bars",
 *   values: [[ms, v], ...], min, max, unit, dash}], band: {values: [[ms, pct]]}, empty: "text"})
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const FONT = 'system-ui, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif';
  const tickFmt = new Intl.DateTimeFormat("en-GB", { timeZone: I.TZ, hour: "2-digit", minute: "2-digit", hour12: false });
  const HOUR = 3600e3;
  const STEPS = [15 * 60e3, 30 * 60e3, HOUR, 2 * HOUR, 3 * HOUR, 4 * HOUR, 6 * HOUR];

  /** The smallest max >= v whose quarters are round numbers (1, 2, 2.5, 5 x 10^k). */
  function niceMax(v) {
    if (!(v > 0)) return 4;
    const q = v / 4;
    const p = Math.pow(10, Math.floor(Math.log10(q)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= q) return 4 * m * p;
    return 40 * p;
  }

  function chart(canvas, o) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 360;
    const hgt = canvas.clientHeight || 180;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const hasRight = o.series.some((s) => s.axis === "right");
    const pad = { l: 40, r: hasRight ? 40 : 12, t: 10, b: o.band ? 34 : 22 };
    const pw = w - pad.l - pad.r;
    const ph = hgt - pad.t - pad.b;
    const t0 = o.start.getTime();
    const t1 = o.end.getTime();
    const x = (t) => pad.l + ((t - t0) / Math.max(1, t1 - t0)) * pw;

    const scale = {};
    for (const axis of ["left", "right"]) {
      const ss = o.series.filter((s) => (s.axis || "left") === axis);
      if (!ss.length) continue;
      let max = Math.max(0, ...ss.map((s) => (s.max !== undefined ? s.max : Math.max(0, ...s.values.map((p) => p[1] || 0)))));
      max = ss.some((s) => s.max !== undefined) ? max : niceMax(max * 1.08);
      scale[axis] = { max: max, color: ss[0].color, y: (v) => pad.t + ph - (v / max) * ph };
    }

    // Grid and axes.
    ctx.font = "11px " + FONT;
    ctx.strokeStyle = "rgba(154,168,189,0.18)";
    ctx.lineWidth = 1;
    ctx.fillStyle = "#9aa8bd";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = Math.round(pad.t + (ph * i) / 4) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.l, y);
      ctx.lineTo(pad.l + pw, y);
      ctx.stroke();
      for (const axis of Object.keys(scale)) {
        const sc = scale[axis];
        const v = sc.max * (1 - i / 4);
        ctx.fillStyle = sc.color;
        ctx.textAlign = axis === "left" ? "right" : "left";
        ctx.fillText(IOC.fmtNum(v, sc.max < 8 ? 1 : 0), axis === "left" ? pad.l - 6 : pad.l + pw + 6, y);
      }
    }
    const step = STEPS.find((s) => (t1 - t0) / s <= 7) || 12 * HOUR;
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    ctx.fillStyle = "#9aa8bd";
    // Ticks on round local hours (Vietnam is UTC+7 all year, no daylight saving).
    const off = 7 * HOUR;
    for (let tk = Math.ceil((t0 + off) / step) * step - off; tk <= t1; tk += step) {
      const xx = Math.round(x(tk)) + 0.5;
      ctx.strokeStyle = "rgba(154,168,189,0.12)";
      ctx.beginPath();
      ctx.moveTo(xx, pad.t);
      ctx.lineTo(xx, pad.t + ph);
      ctx.stroke();
      ctx.fillText(tickFmt.format(new Date(tk)), xx, hgt - pad.b + (o.band ? 16 : 5));
    }

    const hasData = o.series.some((s) => s.values.length) || (o.band && o.band.values.length);
    if (!hasData) {
      ctx.fillStyle = "#9aa8bd";
      ctx.font = "14px " + FONT;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.fillText(o.empty || "", pad.l + pw / 2, pad.t + ph / 2);
      return;
    }
    const bw = Math.max(1, (o.bucketMs / Math.max(1, t1 - t0)) * pw);

    for (const s of o.series.filter((s) => s.type === "bars")) {
      const sc = scale[s.axis || "left"];
      ctx.fillStyle = s.color;
      ctx.globalAlpha = 0.35;
      for (const [t, v] of s.values) {
        if (v === null || v === undefined) continue;
        const y = sc.y(v);
        ctx.fillRect(x(t) + 0.5, y, Math.max(1, bw - 1), pad.t + ph - y);
      }
      ctx.globalAlpha = 1;
    }
    for (const s of o.series.filter((s) => s.type !== "bars")) {
      const sc = scale[s.axis || "left"];
      ctx.strokeStyle = s.color;
      ctx.lineWidth = s.width || 2;
      ctx.setLineDash(s.dash || []);
      ctx.lineJoin = "round";
      ctx.beginPath();
      let prev = null;
      let lone = [];
      for (const [t, v] of s.values) {
        if (v === null || v === undefined) {
          prev = null;
          continue;
        }
        const px = x(t + o.bucketMs / 2);
        const py = sc.y(v);
        if (prev === null || t - prev > o.bucketMs * 1.5) {
          ctx.moveTo(px, py);
          lone.push([px, py]);
        } else {
          ctx.lineTo(px, py);
          lone = lone.slice(0, -1);
        }
        prev = t;
      }
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.fillStyle = s.color;
      for (const [px, py] of lone) {
        ctx.beginPath();
        ctx.arc(px, py, 2.2, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    if (o.band) {
      // A strip under the plot: green when every check was good, violet when none was.
      const y = pad.t + ph + 3;
      for (const [t, pct] of o.band.values) {
        ctx.fillStyle = pct >= 99.5 ? "#35c06f" : pct >= 50 ? "#ffd23f" : "#c58af9";
        ctx.fillRect(x(t), y, Math.max(1, bw), 8);
      }
    }
  }

  IOC.chart = chart;
})();
