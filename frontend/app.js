/* IOC operator map: province map with device markers + live alert feed.
 *
 * Plain JS, no build step. Data:
 *   GET  /api/v1/geo/provinces, /api/v1/geo/province   map outlines (GeoJSON)
 *   GET  /api/v1/areas                                  area names and centres
 *   GET  /api/v1/devices                                polled every 10 s
 *   GET  /api/v1/alerts?status=open                     initial feed (until the stream's snapshot)
 *   POST /api/v1/alerts/{id}/ack                        {"note": "..."}
 *   WS   /api/v1/stream[?since=N]                       snapshot / event / resync / heartbeat
 *
 * For tests: window.iocState = {devices: Map, alerts: Map, lastEventId, ...}.
 */
(function () {
  "use strict";

  const I = window.I18N;
  const t = I.t;

  const API = "/api/v1";
  const DEVICE_POLL_MS = 10000;
  const RESOLVED_LINGER_MS = 4000; // a resolved alert stays highlighted this long, then goes
  const FLASH_MS = 6000; // a newly firing alert flashes this long
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const STALE_SOCKET_MS = 30000; // no message at all for this long: the socket is dead

  const OPEN_STATUSES = new Set(["pending", "firing", "acknowledged"]);
  const SEVERITY_RANK = { critical: 0, major: 1, minor: 2, info: 3 };
  const STATUS_RANK = { firing: 0, pending: 1, acknowledged: 2, resolved: 3 };

  const COLORS = {
    ok: "#2ecc71",
    alert: "#ff3b3b",
    pending: "#ffb020",
    unknown: "#8a94a6",
  };

  // ---- state (exposed for tests) -------------------------------------------------------
  const state = {
    devices: new Map(), // id -> device from /api/v1/devices (+ ._state: ok|alert|pending|unknown)
    alerts: new Map(), // id -> alert (open ones, and resolved ones while they linger)
    lastEventId: null,
    areas: new Map(), // id -> area
    connected: false,
    lastMessageAt: null, // Date of the last websocket message (any type)
    snapshotReceived: false,
  };
  window.iocState = state;

  // ---- tiny DOM helper -----------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") el.className = v;
        else if (k === "dataset") Object.assign(el.dataset, v);
        else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
        else el.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  async function getJSON(path) {
    const res = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!res.ok) throw new Error(res.status + " " + res.statusText);
    return res.json();
  }

  let toastTimer = null;
  function toast(msg) {
    const el = document.getElementById("toast");
    el.textContent = msg;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), 6000);
  }

  function fmtNumber(v, digits) {
    if (v === null || v === undefined || isNaN(Number(v))) return "–";
    return new Intl.NumberFormat(I.lang === "vi" ? "vi-VN" : "en-GB", {
      maximumFractionDigits: digits === undefined ? 1 : digits,
    }).format(Number(v));
  }

  function areaName(id) {
    const a = state.areas.get(id);
    if (!a) return id || "";
    return (I.lang === "en" ? a.name_en : a.name) || a.name || id;
  }

  function alertTitle(a) {
    return (I.lang === "en" ? a.title_en || a.title : a.title || a.title_en) || a.rule_id || "";
  }

  // ---- map -----------------------------------------------------------------------------
  const renderer = L.canvas({ padding: 0.5 });
  const map = L.map("map", {
    preferCanvas: true,
    renderer: renderer,
    zoomControl: true,
    attributionControl: true,
    zoomSnap: 0.1,
    minZoom: 6,
    maxZoom: 17,
    worldCopyJump: false,
  });
  map.attributionControl.setPrefix("Leaflet");
  map.attributionControl.addAttribution("Natural Earth (public domain)");
  map.setView([11.7, 106.9], 9); // Bình Phước; replaced by fitBounds once the outline loads

  // Panes keep the drawing order stable: context < province < area labels < markers.
  map.createPane("context").style.zIndex = 350;
  map.createPane("province").style.zIndex = 360;
  map.createPane("devices").style.zIndex = 450;
  map.createPane("labels").style.zIndex = 500; // above the dots, but lets clicks through
  map.getPane("labels").style.pointerEvents = "none";
  const markerRenderer = L.canvas({ padding: 0.5, pane: "devices" });

  // Legend (bottom left), re-rendered on language change.
  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend");
    L.DomEvent.disableClickPropagation(div);
    return div;
  };
  legend.addTo(map);
  function renderLegend() {
    const dot = (color, cls) => h("i", { class: cls || null, style: cls ? null : "background:" + color });
    legend.getContainer().replaceChildren(
      h("div", { class: "legend-title" }, t("legend.title")),
      h("div", null, dot(COLORS.ok), t("legend.ok")),
      h("div", null, dot(COLORS.alert), t("legend.alert")),
      h("div", null, dot(COLORS.pending), t("legend.pending")),
      h("div", null, dot(COLORS.unknown), t("legend.nodata")),
      h("div", null, dot(null, "cam"), t("legend.camera")),
    );
  }
  renderLegend();

  let provinceBounds = null;

  async function loadGeo(apiPath, staticPath) {
    try {
      return await getJSON(apiPath);
    } catch (err) {
      // The same files ship under /static/geo/: keep the map when the geo endpoint is down.
      return getJSON(staticPath);
    }
  }

  async function drawMap() {
    const [provinces, province] = await Promise.all([
      loadGeo(API + "/geo/provinces", "/static/geo/vn-provinces.geojson").catch(() => null),
      loadGeo(API + "/geo/province", "/static/geo/vn-58.geojson"),
    ]);
    if (provinces) {
      L.geoJSON(provinces, {
        pane: "context",
        renderer: L.canvas({ pane: "context" }),
        interactive: false,
        style: { color: "#33425c", weight: 0.8, fillColor: "#141c2b", fillOpacity: 1 },
      }).addTo(map);
    }
    const outline = L.geoJSON(province, {
      pane: "province",
      renderer: L.canvas({ pane: "province" }),
      interactive: false,
      style: { color: "#4fc3f7", weight: 3, fillColor: "#1d3b57", fillOpacity: 0.45 },
    }).addTo(map);
    provinceBounds = outline.getBounds();
    if (provinceBounds.isValid()) {
      map.fitBounds(provinceBounds, { padding: [24, 24] });
      map.setMaxBounds(provinceBounds.pad(3));
    }
  }

  // District names as faint labels (areas are configuration: any depth, any number).
  const areaLabels = L.layerGroup().addTo(map);
  function drawAreaLabels() {
    areaLabels.clearLayers();
    for (const a of state.areas.values()) {
      if (!a.parent_id || a.lat === null || a.lat === undefined) continue; // skip the province itself
      L.marker([a.lat, a.lon], {
        pane: "labels",
        interactive: false,
        keyboard: false,
        icon: L.divIcon({ className: "area-label", html: "", iconSize: null }),
      })
        .addTo(areaLabels)
        .getElement()
        .appendChild(h("span", null, areaName(a.id)));
    }
  }

  async function loadAreas() {
    try {
      const areas = await getJSON(API + "/areas");
      state.areas = new Map(areas.map((a) => [a.id, a]));
      drawAreaLabels();
    } catch (err) {
      console.warn("areas", err);
    }
  }

  // ---- devices and markers ---------------------------------------------------------------
  const markers = new Map(); // device id -> L.circleMarker

  /** Open alerts per device, derived from the alert map (the stream is the freshest source). */
  function openAlertsByDevice() {
    const by = new Map();
    for (const a of state.alerts.values()) {
      if (!OPEN_STATUSES.has(a.status)) continue;
      if (!by.has(a.device_id)) by.set(a.device_id, []);
      by.get(a.device_id).push(a);
    }
    return by;
  }

  function deviceState(dev, alertsOfDevice) {
    if (alertsOfDevice && alertsOfDevice.some((a) => a.status === "firing" || a.status === "acknowledged")) {
      return "alert";
    }
    if (alertsOfDevice && alertsOfDevice.length) return "pending";
    // Before the first snapshot the server's own status is all we know.
    if (!state.snapshotReceived && dev.status === "alert") return "alert";
    if (dev.status === "unknown" || !dev.last_seen) return "unknown";
    return "ok";
  }

  // Dots shrink when zoomed out over a dense province and grow when zoomed in.
  function radiusScale() {
    const z = map.getZoom();
    const dense = state.devices.size > 1000 ? 0.8 : 1;
    return dense * (z < 9.5 ? 0.85 : z < 11 ? 1 : z < 13 ? 1.2 : 1.4);
  }
  let lastScale = null;
  map.on("zoomend", () => {
    if (radiusScale() === lastScale) return;
    for (const [id, m] of markers) {
      const dev = state.devices.get(id);
      if (dev) m.setStyle(markerStyle(dev, dev._state));
    }
  });

  function markerStyle(dev, st) {
    const camera = dev.kind === "camera";
    lastScale = radiusScale();
    return {
      radius: st === "alert" ? 8 : (camera ? 5.5 : 4.5) * lastScale,
      color: camera ? "#d6e6ff" : "#0b111c",
      weight: camera ? 1.5 : 1,
      fillColor: COLORS[st] || COLORS.unknown,
      fillOpacity: st === "unknown" ? 0.75 : 0.95,
      opacity: 0.9,
    };
  }

  function popupContent(dev) {
    const alerts = openAlertsByDevice().get(dev.id) || [];
    const st = dev._state || "unknown";
    const last = dev.last || {};
    const rows = [
      [t("dev.kind"), t("kind." + dev.kind)],
      [t("dev.area"), areaName(dev.area_id)],
      [t("dev.state"), h("span", { class: "st st-" + st }, t("state." + st))],
    ];
    if (last.speed_kmh !== undefined && last.speed_kmh !== null) {
      rows.push([t("dev.speed"), fmtNumber(last.speed_kmh) + " " + t("unit.kmh")]);
    }
    if (last.intensity !== undefined && last.intensity !== null) {
      rows.push([t("dev.intensity"), fmtNumber(last.intensity, 0) + " " + t("unit.vph")]);
    }
    if (last.occupancy !== undefined && last.occupancy !== null) {
      const occ = Number(last.occupancy);
      rows.push([t("dev.occupancy"), fmtNumber(occ <= 1 ? occ * 100 : occ, 0) + " %"]);
    }
    for (const [k, v] of Object.entries(last)) {
      if (["speed_kmh", "intensity", "occupancy"].includes(k) || v === null || typeof v === "object") continue;
      rows.push([k, typeof v === "number" ? fmtNumber(v, 2) : String(v)]);
    }
    rows.push([t("dev.lastSeen"), dev.last_seen ? I.formatTime(dev.last_seen) : t("dev.never")]);
    return h(
      "div",
      { class: "dev-popup", dataset: { deviceId: dev.id } },
      h("div", { class: "dev-name" }, dev.name || dev.id),
      h("table", null, rows.map(([k, v]) => h("tr", null, h("th", null, k), h("td", null, v)))),
      alerts.length
        ? h(
            "div",
            { class: "dev-alerts" },
            h("div", { class: "dev-alerts-title" }, t("dev.alerts")),
            alerts.map((a) =>
              h("div", { class: "dev-alert sev-" + a.severity }, "● " + alertTitle(a) + " (" + t("status." + a.status) + ")"),
            ),
          )
        : null,
    );
  }

  function tooltipContent(dev) {
    return (dev.name || dev.id) + " · " + t("state." + (dev._state || "unknown"));
  }

  // A translucent halo under every device in alert, so red stands out among hundreds of green.
  const halos = new Map(); // device id -> L.circleMarker
  function setHalo(dev, on) {
    const halo = halos.get(dev.id);
    if (on && !halo) {
      const m = L.circleMarker([dev.lat, dev.lon], {
        renderer: markerRenderer,
        interactive: false,
        radius: 16,
        color: COLORS.alert,
        weight: 2,
        opacity: 0.8,
        fillColor: COLORS.alert,
        fillOpacity: 0.18,
      }).addTo(map);
      halos.set(dev.id, m);
    } else if (!on && halo) {
      halo.remove();
      halos.delete(dev.id);
    } else if (halo) {
      halo.setLatLng([dev.lat, dev.lon]);
    }
  }

  function upsertMarker(dev, alertsByDev) {
    if (typeof dev.lat !== "number" || typeof dev.lon !== "number") return;
    const st = deviceState(dev, alertsByDev.get(dev.id));
    const changed = dev._state !== st;
    dev._state = st;
    setHalo(dev, st === "alert");
    let m = markers.get(dev.id);
    if (!m) {
      m = L.circleMarker([dev.lat, dev.lon], Object.assign({ renderer: markerRenderer }, markerStyle(dev, st)));
      m.deviceId = dev.id;
      m.bindTooltip(() => tooltipContent(state.devices.get(m.deviceId) || dev), { direction: "top", offset: [0, -6] });
      m.bindPopup(() => popupContent(state.devices.get(m.deviceId) || dev), { maxWidth: 340, minWidth: 240 });
      m.addTo(map);
      markers.set(dev.id, m);
      return;
    }
    const ll = m.getLatLng();
    if (ll.lat !== dev.lat || ll.lng !== dev.lon) m.setLatLng([dev.lat, dev.lon]);
    if (changed) m.setStyle(markerStyle(dev, st));
    if (m.isPopupOpen()) m.setPopupContent(popupContent(dev));
  }

  /** Draw order on the canvas: ordinary dots, then halos, then the dots in alert on top. */
  function raiseAlerts() {
    for (const halo of halos.values()) halo.bringToFront();
    for (const id of halos.keys()) {
      const m = markers.get(id);
      if (m) m.bringToFront();
    }
  }

  function refreshMarkers(onlyDeviceIds) {
    const byDev = openAlertsByDevice();
    if (onlyDeviceIds) {
      for (const id of onlyDeviceIds) {
        const dev = state.devices.get(id);
        if (dev) upsertMarker(dev, byDev);
      }
    } else {
      for (const dev of state.devices.values()) upsertMarker(dev, byDev);
    }
    raiseAlerts();
    renderCounts();
  }

  let devicesFailed = false;
  async function pollDevices() {
    try {
      const list = await getJSON(API + "/devices");
      const seen = new Set();
      for (const d of list) {
        const prev = state.devices.get(d.id);
        if (prev) d._state = prev._state;
        state.devices.set(d.id, d);
        seen.add(d.id);
      }
      for (const id of Array.from(state.devices.keys())) {
        if (!seen.has(id)) {
          state.devices.delete(id);
          const m = markers.get(id);
          if (m) {
            m.remove();
            markers.delete(id);
          }
          setHalo({ id: id }, false);
        }
      }
      refreshMarkers();
      renderFeed(); // device names/areas may have arrived after the alerts
      devicesFailed = false;
    } catch (err) {
      if (!devicesFailed) toast(t("devices.error"));
      devicesFailed = true;
      console.warn("devices", err);
    } finally {
      setTimeout(pollDevices, DEVICE_POLL_MS);
    }
  }

  function renderCounts() {
    const c = { devices: state.devices.size, ok: 0, alert: 0, unknown: 0, open: 0, firing: 0 };
    for (const d of state.devices.values()) {
      if (d._state === "ok") c.ok++;
      else if (d._state === "alert" || d._state === "pending") c.alert++;
      else c.unknown++;
    }
    for (const a of state.alerts.values()) {
      if (!OPEN_STATUSES.has(a.status)) continue;
      c.open++;
      if (a.status === "firing") c.firing++;
    }
    document.querySelectorAll("[data-count]").forEach((el) => {
      const k = el.getAttribute("data-count");
      if (k in c) el.textContent = fmtNumber(c[k], 0);
    });
  }

  // ---- alert feed ------------------------------------------------------------------------
  const feedEl = document.getElementById("alert-feed");
  const feedEmpty = document.getElementById("feed-empty");
  const flashing = new Map(); // alert id -> until (ms)
  const lingering = new Map(); // resolved alert id -> timer
  const acking = new Set();

  function alertTime(a) {
    return a.fired_at || a.started_at || a.updated_at;
  }

  function sortAlerts(list) {
    return list.sort((x, y) => {
      const s = (STATUS_RANK[x.status] ?? 9) - (STATUS_RANK[y.status] ?? 9);
      if (s) return s;
      const v = (SEVERITY_RANK[x.severity] ?? 9) - (SEVERITY_RANK[y.severity] ?? 9);
      if (v) return v;
      return String(alertTime(y) || "").localeCompare(String(alertTime(x) || ""));
    });
  }

  function alertItem(a) {
    const dev = state.devices.get(a.device_id);
    const deviceName = a.device_name || (dev && dev.name) || a.device_id || "";
    const area = a.area_id || (dev && dev.area_id);
    const classes = ["alert-item", "sev-" + a.severity, "status-" + a.status];
    if ((flashing.get(a.id) || 0) > Date.now()) classes.push("flash");
    const busy = acking.has(a.id);
    return h(
      "li",
      {
        class: classes.join(" "),
        dataset: { alertId: a.id, status: a.status, severity: a.severity, deviceId: a.device_id || "" },
        tabindex: "0",
        onclick: (ev) => {
          if (ev.target.closest("button")) return;
          focusDevice(a.device_id);
        },
        onkeydown: (ev) => {
          if (ev.key === "Enter" && !ev.target.closest("button")) focusDevice(a.device_id);
        },
      },
      h(
        "div",
        { class: "ai-head" },
        h("span", { class: "sev-badge" }, t("sev." + a.severity)),
        h("span", { class: "ai-status" }, t("status." + a.status)),
        h("time", { class: "ai-time", datetime: alertTime(a) || "" }, I.formatTime(alertTime(a))),
      ),
      h("div", { class: "ai-title" }, alertTitle(a)),
      h(
        "div",
        { class: "ai-meta" },
        h("span", { class: "ai-device" }, deviceName),
        area ? h("span", { class: "ai-area" }, areaName(area)) : null,
        a.value !== null && a.value !== undefined
          ? h("span", { class: "ai-value" }, t("feed.value") + " " + fmtNumber(a.value, 2))
          : null,
      ),
      a.status === "firing"
        ? h(
            "div",
            { class: "ai-actions" },
            h(
              "button",
              {
                type: "button",
                class: "ack-btn",
                disabled: busy,
                dataset: { alertId: a.id },
                onclick: () => acknowledge(a.id),
              },
              busy ? t("feed.acking") : t("feed.ack"),
            ),
          )
        : a.status === "acknowledged" && (a.acknowledged_by || a.ack_note || a.note)
          ? h(
              "div",
              { class: "ai-ack" },
              "✓ " + t("feed.ackedBy") + (a.acknowledged_by ? " · " + a.acknowledged_by : "") +
                (a.ack_note || a.note ? " — " + (a.ack_note || a.note) : ""),
            )
          : null,
    );
  }

  const feedItems = new Map(); // alert id -> {key, el}
  function itemKey(a) {
    const dev = state.devices.get(a.device_id);
    return JSON.stringify([
      I.lang,
      a.status,
      a.severity,
      a.updated_at,
      alertTitle(a),
      a.value,
      a.device_name || (dev && dev.name),
      areaName(a.area_id || (dev && dev.area_id)),
      acking.has(a.id),
      (flashing.get(a.id) || 0) > Date.now(),
    ]);
  }

  let renderQueued = false;
  function renderFeed() {
    // Coalesce bursts of events into one repaint per frame.
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      const list = sortAlerts(Array.from(state.alerts.values()));
      // Keyed update: an item is rebuilt only when what it shows changed, so a running flash
      // animation or a pressed button is not thrown away by an unrelated event.
      const keep = new Set();
      let prevEl = null;
      for (const a of list) {
        const key = itemKey(a);
        let entry = feedItems.get(a.id);
        if (!entry || entry.key !== key) {
          const el = alertItem(a);
          if (entry) entry.el.replaceWith(el);
          entry = { key: key, el: el };
          feedItems.set(a.id, entry);
        }
        keep.add(a.id);
        const want = prevEl ? prevEl.nextSibling : feedEl.firstChild;
        if (want !== entry.el) feedEl.insertBefore(entry.el, want);
        prevEl = entry.el;
      }
      for (const [id, entry] of Array.from(feedItems.entries())) {
        if (!keep.has(id)) {
          entry.el.remove();
          feedItems.delete(id);
        }
      }
      feedEmpty.hidden = list.length > 0;
      renderCounts();
    });
  }

  function focusDevice(deviceId) {
    const m = markers.get(deviceId);
    if (!m) return;
    map.flyTo(m.getLatLng(), Math.max(map.getZoom(), 12), { duration: 0.6 });
    m.openPopup();
  }

  function applyAlert(a, isNewEvent) {
    if (!a || a.id === undefined || a.id === null) return;
    const prev = state.alerts.get(a.id);
    if (a.status === "resolved") {
      state.alerts.set(a.id, a);
      if (!lingering.has(a.id)) {
        lingering.set(
          a.id,
          setTimeout(() => {
            lingering.delete(a.id);
            const cur = state.alerts.get(a.id);
            if (cur && cur.status === "resolved") state.alerts.delete(a.id);
            renderFeed();
          }, RESOLVED_LINGER_MS),
        );
      }
    } else {
      if (lingering.has(a.id)) {
        clearTimeout(lingering.get(a.id));
        lingering.delete(a.id);
      }
      state.alerts.set(a.id, a);
      if (isNewEvent && a.status === "firing" && (!prev || prev.status !== "firing")) {
        flashing.set(a.id, Date.now() + FLASH_MS);
        setTimeout(() => {
          flashing.delete(a.id);
          const entry = feedItems.get(a.id);
          if (entry) entry.el.classList.remove("flash");
        }, FLASH_MS);
      }
    }
    refreshMarkers([a.device_id, prev && prev.device_id].filter(Boolean));
    renderFeed();
  }

  function replaceAlerts(list) {
    for (const timer of lingering.values()) clearTimeout(timer);
    lingering.clear();
    state.alerts = new Map();
    for (const a of list || []) if (a && OPEN_STATUSES.has(a.status)) state.alerts.set(a.id, a);
    refreshMarkers();
    renderFeed();
  }

  async function acknowledge(id) {
    if (acking.has(id)) return;
    acking.add(id);
    renderFeed();
    try {
      const res = await fetch(API + "/alerts/" + encodeURIComponent(id) + "/ack", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ note: "" }),
      });
      if (res.status === 401 || res.status === 403) throw new Error(t("feed.ack.auth"));
      if (!res.ok) {
        let detail = res.status + " " + res.statusText;
        try {
          const body = await res.json();
          if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
        } catch (_) {
          /* not JSON */
        }
        throw new Error(detail);
      }
      const updated = await res.json();
      if (updated && updated.id !== undefined) applyAlert(updated, false);
    } catch (err) {
      toast(t("feed.ack.failed", { msg: err.message }));
    } finally {
      acking.delete(id);
      renderFeed();
    }
  }

  // ---- live stream -----------------------------------------------------------------------
  const connEl = document.getElementById("conn-status");
  const connText = connEl.querySelector(".conn-text");
  const connAge = document.getElementById("conn-age");
  let ws = null;
  let attempt = 0;
  let reconnectTimer = null;
  let everConnected = false;
  let connLabelKey = "conn.connecting";

  function setConn(live, labelKey) {
    state.connected = live;
    connEl.dataset.state = live ? "live" : "reconnecting";
    connLabelKey = labelKey;
    connText.textContent = t(labelKey);
    renderAge();
  }

  function renderAge() {
    if (!state.lastMessageAt) {
      connAge.textContent = "";
      return;
    }
    const n = Math.max(0, Math.round((Date.now() - state.lastMessageAt.getTime()) / 1000));
    connAge.textContent = t("conn.ago", { n: n });
  }

  function streamUrl() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = proto + "//" + location.host + API + "/stream";
    if (state.lastEventId !== null && state.lastEventId !== undefined) {
      url += "?since=" + encodeURIComponent(state.lastEventId);
    }
    return url;
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    setConn(false, everConnected ? "conn.reconnecting" : "conn.connecting");
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    attempt++;
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      connect();
    }, Math.min(delay, BACKOFF_MAX_MS));
  }

  function connect() {
    if (ws) {
      const old = ws;
      ws = null;
      old.onopen = old.onmessage = old.onclose = old.onerror = null;
      try {
        old.close();
      } catch (_) {
        /* already closed */
      }
    }
    let sock;
    try {
      sock = new WebSocket(streamUrl());
    } catch (err) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    sock.onopen = () => {
      everConnected = true;
      setConn(true, "conn.live");
    };
    sock.onmessage = (ev) => {
      state.lastMessageAt = new Date();
      attempt = 0; // the server talks to us: the next failure starts the backoff afresh
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch (_) {
        console.warn("stream: not JSON", ev.data);
        return;
      }
      handleMessage(msg);
      renderAge();
    };
    sock.onerror = () => {
      /* onclose follows */
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      ws = null;
      scheduleReconnect();
    };
  }

  function handleMessage(msg) {
    switch (msg.type) {
      case "snapshot":
        state.snapshotReceived = true;
        replaceAlerts(msg.alerts);
        if (msg.watermark !== undefined && msg.watermark !== null) state.lastEventId = msg.watermark;
        if (!state.connected) setConn(true, "conn.live");
        break;
      case "event": {
        if (typeof msg.id === "number" && typeof state.lastEventId === "number" && msg.id <= state.lastEventId) {
          return; // already applied (replayed after a reconnect)
        }
        applyAlert(msg.alert, true);
        if (msg.id !== undefined && msg.id !== null) state.lastEventId = msg.id;
        break;
      }
      case "resync":
        // We fell behind: drop the cursor and start over with a fresh snapshot.
        console.info("stream: resync", msg.reason);
        state.lastEventId = null;
        setConn(false, "conn.resync");
        attempt = 0;
        connect();
        break;
      case "heartbeat":
        // The watermark is not adopted as our cursor: only events we applied move it.
        if (!state.connected) setConn(true, "conn.live");
        break;
      default:
        console.debug("stream: unknown message", msg);
    }
  }

  // A socket that stays open but silent (no heartbeats) is as good as dead.
  setInterval(() => {
    renderAge();
    if (ws && state.connected && state.lastMessageAt && Date.now() - state.lastMessageAt.getTime() > STALE_SOCKET_MS) {
      const dead = ws;
      ws = null;
      dead.onopen = dead.onmessage = dead.onclose = dead.onerror = null;
      try {
        dead.close();
      } catch (_) {
        /* ignore */
      }
      scheduleReconnect();
    }
  }, 1000);

  // ---- header: clock and language -----------------------------------------------------------
  const clockEl = document.getElementById("clock");
  const clockFmt = new Intl.DateTimeFormat("vi-VN", {
    timeZone: I.TZ,
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hour12: false,
  });
  function tickClock() {
    clockEl.textContent = clockFmt.format(new Date());
  }
  setInterval(tickClock, 1000);
  tickClock();

  document.getElementById("lang-toggle").addEventListener("click", () => {
    I.setLang(I.lang === "vi" ? "en" : "vi");
  });
  I.onChange(() => {
    connText.textContent = t(connLabelKey);
    renderAge();
    drawAreaLabels();
    renderLegend();
    renderFeed();
    renderCounts();
    map.closePopup();
  });

  // ---- start -------------------------------------------------------------------------------
  async function start() {
    I.applyStatic();
    setConn(false, "conn.connecting");
    drawMap().catch((err) => {
      const el = document.getElementById("map-message");
      el.textContent = t("map.error", { msg: err.message });
      el.hidden = false;
    });
    loadAreas();
    // The REST list fills the feed at once; the stream's snapshot replaces it when it arrives.
    getJSON(API + "/alerts?status=open")
      .then((list) => {
        if (!state.snapshotReceived) replaceAlerts(list);
      })
      .catch((err) => console.warn("alerts", err));
    pollDevices();
    connect();
  }

  start();
})();
