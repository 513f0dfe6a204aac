/* IOC operator map (/): the province with every device, filters and search, the live alert feed
 * and the device panel. Plain JS, no build step. Data:
 *   GET  /api/v1/geo/provinces, /api/v1/geo/province   map outlines (GeoJSON shipped with the app)
 *   GET  /api/v1/areas, /api/v1/devices (polled), /api/v1/maintenance (polled + on events)
 *   GET  /api/v1/alerts?status=open                     first fill of the feed
 *   WS   /api/v1/stream[?since=N]                       snapshot / event / resync / heartbeat
 * Actions (feed.js, device-panel.js) go through the REST API; their effect comes back as events.
 * Nothing loads before GET /api/v1/auth/me answers (auth.js): the role decides what is offered.
 *
 * For tests: window.iocState = {devices (sensors and cameras), sites, alerts, areas, lastEventId,
 * connected, interactive, ...}.
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const t = I.t;
  const h = IOC.h;

  const RESOLVED_LINGER_MS = 4000; // a resolved alert stays visible this long, then goes
  const FLASH_MS = 6000;
  const MAINT_POLL_MS = 30000;
  const ALERT_LIST_CAP = 500; // the snapshot and /alerts default limit

  const state = {
    devices: new Map(), // sensors and cameras: id -> device from /api/v1/devices
    sites: new Map(), // links / power feeds the devices depend on (root causes)
    alerts: new Map(), // open alerts (and resolved ones while they linger)
    areas: new Map(),
    maintenance: [],
    snapshotReceived: false,
    interactive: false,
    filters: { kinds: new Set(["traffic_sensor", "camera", "site"]), area: "", severity: "all" },
  };
  window.iocState = state;

  // ---- helpers -------------------------------------------------------------------------------
  let toastTimer = null;
  function toast(msg) {
    const el = document.getElementById("toast");
    el.textContent = msg;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), 6000);
  }
  function areaName(id) {
    const a = state.areas.get(id);
    return a ? IOC.pick(a, "name", "name_en") : id || "";
  }
  function anyDevice(id) {
    return state.devices.get(id) || state.sites.get(id);
  }
  const subtreeCache = new Map();
  function subtree(id) {
    if (!subtreeCache.has(id)) {
      const out = new Set([id]);
      let grew = true;
      while (grew) {
        grew = false;
        for (const a of state.areas.values()) {
          if (a.parent_id && out.has(a.parent_id) && !out.has(a.id)) {
            out.add(a.id);
            grew = true;
          }
        }
      }
      subtreeCache.set(id, out);
    }
    return subtreeCache.get(id);
  }
  function ancestors(id) {
    const out = new Set();
    let node = id;
    while (node && !out.has(node)) {
      out.add(node);
      node = (state.areas.get(node) || {}).parent_id;
    }
    return out;
  }

  // ---- device state ------------------------------------------------------------------------------
  let byDevice = new Map();
  function indexAlerts() {
    byDevice = new Map();
    for (const a of state.alerts.values()) {
      if (!IOC.OPEN.has(a.status)) continue;
      if (!byDevice.has(a.device_id)) byDevice.set(a.device_id, []);
      byDevice.get(a.device_id).push(a);
    }
  }
  function maintenanceOf(dev) {
    const now = Date.now();
    const up = ancestors(dev.area_id);
    return (
      state.maintenance.find(
        (m) =>
          !m.cancelled_at &&
          new Date(m.starts_at).getTime() <= now &&
          new Date(m.ends_at).getTime() > now &&
          (m.device_id === dev.id || (m.area_id && up.has(m.area_id))),
      ) || null
    );
  }
  /** The display state: worst active alert (by severity), then maintenance, pending, health. */
  function stateOf(dev) {
    const list = byDevice.get(dev.id) || [];
    let worst = null;
    for (const a of list) {
      if (!IOC.ACTIVE.has(a.status)) continue;
      if (worst === null || IOC.SEV_RANK[a.severity] < IOC.SEV_RANK[worst]) worst = a.severity;
    }
    if (worst) return IOC.STATES[worst] ? worst : "major";
    if (maintenanceOf(dev)) return "maintenance";
    if (list.some((a) => a.status === "pending")) return "pending";
    switch (dev.status) {
      case "problem":
      case "stuck":
        return "problem";
      case "offline":
      case "silent":
        return "offline";
      case "alert":
        // The stream is the freshest source, unless the alert list hit the server's cap (500):
        // then a device the server calls alerting may have an alert we were not sent.
        return state.snapshotReceived && state.alerts.size < ALERT_LIST_CAP ? "ok" : "major";
      case "ok":
        return "ok";
      default:
        return "unknown";
    }
  }

  // ---- filters -----------------------------------------------------------------------------------
  function severityPasses(sev) {
    const f = state.filters.severity;
    return f === "all" || (IOC.SEV_RANK[sev] !== undefined && IOC.SEV_RANK[sev] <= IOC.SEV_RANK[f]);
  }
  function devicePasses(dev, st) {
    const f = state.filters;
    if (!f.kinds.has(dev.kind)) return false;
    if (f.area && !subtree(f.area).has(dev.area_id)) return false;
    if (f.severity !== "all" && !severityPasses(st)) return false;
    return true;
  }
  function alertPasses(a) {
    const f = state.filters;
    const dev = anyDevice(a.device_id);
    const kind = a.device_kind || (dev && dev.kind);
    if (kind && !f.kinds.has(kind)) return false;
    if (f.area && !subtree(f.area).has(a.area_id)) return false;
    return severityPasses(a.severity);
  }

  // ---- map -----------------------------------------------------------------------------------------
  const map = L.map("map", { preferCanvas: true, zoomSnap: 0.25, minZoom: 6, maxZoom: 17, keyboard: true });
  map.attributionControl.setPrefix("Leaflet");
  map.attributionControl.addAttribution("Natural Earth (public domain)");
  map.setView([11.7, 106.9], 9);
  map.createPane("context").style.zIndex = 350;
  map.createPane("province").style.zIndex = 360;
  map.createPane("devices").style.zIndex = 450;

  const tip = document.getElementById("map-tip");
  const layer = new IOC.DeviceLayer({
    pane: "devices",
    clusterBelowZoom: 10,
    onDevice: (id) => focusDevice(id, false),
    onHover: (hit, pt) => {
      if (!hit) {
        tip.hidden = true;
        return;
      }
      if (hit.cluster) {
        const c = hit.cluster;
        tip.textContent = areaName(c.key) + " · " + t("tip.cluster", { n: c.n, a: c.alerts }) + " · " + t(IOC.STATES[c.worst].label);
      } else {
        const dev = anyDevice(hit.item.id);
        tip.textContent = (dev ? dev.name : hit.item.id) + " · " + t(IOC.STATES[hit.item.state].label);
      }
      tip.style.transform = "translate(" + (pt.x + 14) + "px," + (pt.y - 10) + "px)";
      tip.hidden = false;
    },
  }).addTo(map);
  state.map = map; // for the benchmark and tests
  state.layer = layer;

  const legend = L.control({ position: "bottomleft" });
  legend.onAdd = () => {
    const div = L.DomUtil.create("div", "legend");
    L.DomEvent.disableClickPropagation(div);
    return div;
  };
  legend.addTo(map);
  function renderLegend() {
    const rows = ["critical", "major", "minor", "pending", "problem", "offline", "maintenance", "unknown", "ok"].map((s) =>
      h("div", { class: "legend-row" }, IOC.shapeIcon(s, 14), t(IOC.STATES[s].label)),
    );
    IOC.put(legend.getContainer(),
      h("div", { class: "legend-title" }, t("legend.title")),
      ...rows,
      h("div", { class: "legend-row legend-kind" }, h("i", { class: "kind-cam" }), t("legend.camera")),
      h("div", { class: "legend-row legend-kind" }, h("i", { class: "kind-site" }), t("legend.site")),
      h("div", { class: "legend-hint" }, t("legend.cluster")),
    );
  }

  async function loadGeo(apiPath, staticPath) {
    try {
      return await IOC.getJSON(apiPath);
    } catch (_) {
      return IOC.getJSON(staticPath); // the same files ship under /static/geo/
    }
  }
  async function drawMap() {
    const [provinces, province] = await Promise.all([
      loadGeo(IOC.API + "/geo/provinces", "/static/geo/vn-provinces.geojson").catch(() => null),
      loadGeo(IOC.API + "/geo/province", "/static/geo/vn-58.geojson"),
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
    const b = outline.getBounds();
    if (b.isValid()) {
      map.fitBounds(b, { padding: [24, 24] });
      map.setMaxBounds(b.pad(3));
    }
  }

  // ---- drawing the devices -------------------------------------------------------------------------
  const itemCache = new Map();
  let counts = {};
  function redraw() {
    indexAlerts();
    const items = [];
    const c = { devices: state.devices.size, ok: 0, alert: 0, problem: 0, unknown: 0, open: 0, firing: 0, shown: 0 };
    for (const dev of [...state.devices.values(), ...state.sites.values()]) {
      const st = stateOf(dev);
      dev._state = st;
      if (dev.kind !== "site") {
        if (st === "ok") c.ok++;
        else if (st === "offline" || st === "unknown") c.unknown++;
        else if (st === "problem") c.problem++;
        else if (st !== "maintenance") c.alert++;
      }
      if (typeof dev.lat !== "number" || !devicePasses(dev, st)) continue;
      let it = itemCache.get(dev.id);
      if (!it || it.lat !== dev.lat || it.lon !== dev.lon) {
        it = { id: dev.id, lat: dev.lat, lon: dev.lon };
        itemCache.set(dev.id, it);
      }
      it.kind = dev.kind;
      it.state = st;
      it.area = dev.area_id;
      items.push(it);
      if (dev.kind !== "site") c.shown++;
    }
    for (const a of state.alerts.values()) {
      if (!IOC.OPEN.has(a.status)) continue;
      c.open++;
      if (a.status === "firing" || a.status === "flapping") c.firing++;
    }
    counts = c;
    layer.setItems(items);
    renderCounts();
    feed.update(state.alerts);
    panel.refresh();
  }
  let redrawQueued = false;
  function scheduleRedraw() {
    if (redrawQueued) return;
    redrawQueued = true;
    requestAnimationFrame(() => {
      redrawQueued = false;
      redraw();
    });
  }
  function renderCounts() {
    document.querySelectorAll("[data-count]").forEach((el) => {
      const k = el.getAttribute("data-count");
      if (k in counts) el.textContent = IOC.fmtNum(counts[k], 0);
    });
    document.getElementById("shown-count").textContent = t("filter.shown", {
      n: IOC.fmtNum(counts.shown || 0, 0),
      m: IOC.fmtNum(counts.devices || 0, 0),
    });
  }

  // ---- feed and panel ------------------------------------------------------------------------------------
  const feed = IOC.AlertFeed({
    el: document.getElementById("alert-feed"),
    emptyEl: document.getElementById("feed-empty"),
    moreEl: document.getElementById("feed-more"),
    getDevice: anyDevice,
    areaName: areaName,
    filter: alertPasses,
    onFocus: (id) => focusDevice(id, true),
    onUpdated: (a) => applyAlert(a, "api"),
    onMaintenance: loadMaintenance,
    toast: toast,
  });
  const panel = IOC.DevicePanel({
    el: document.getElementById("device-panel"),
    getDevice: anyDevice,
    areaName: areaName,
    stateOf: (dev) => dev._state || stateOf(dev),
    maintenanceOf: maintenanceOf,
    openAlerts: (id) => (byDevice.get(id) || []).slice().sort((a, b) => IOC.SEV_RANK[a.severity] - IOC.SEV_RANK[b.severity]),
    onClose: () => layer.select(null),
    onChanged: () => loadMaintenance(),
    toast: toast,
  });

  function focusDevice(id, fly) {
    const dev = anyDevice(id);
    if (!dev) return;
    if (fly || map.getZoom() < 12) map.flyTo([dev.lat, dev.lon], Math.max(map.getZoom(), 13), { duration: 0.6 });
    layer.select(id);
    panel.open(id);
  }

  // ---- alerts ----------------------------------------------------------------------------------------------
  const lingering = new Map();
  function applyAlert(a, kind) {
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
            scheduleRedraw();
          }, RESOLVED_LINGER_MS),
        );
      }
    } else {
      if (lingering.has(a.id)) {
        clearTimeout(lingering.get(a.id));
        lingering.delete(a.id);
      }
      if (prev && prev.updated_at && a.updated_at && a.updated_at < prev.updated_at) return; // stale answer
      state.alerts.set(a.id, a);
      if (kind !== "api" && a.status === "firing" && (!prev || prev.status !== "firing")) feed.flash(a.id, FLASH_MS);
    }
    scheduleRedraw();
  }
  function replaceAlerts(list) {
    for (const timer of lingering.values()) clearTimeout(timer);
    lingering.clear();
    state.alerts = new Map();
    for (const a of list || []) if (a && IOC.OPEN.has(a.status)) state.alerts.set(a.id, a);
    scheduleRedraw();
  }

  function onEvent(msg) {
    if (msg.alert) {
      applyAlert(msg.alert, msg.kind);
      if (msg.kind === "alert.note" && msg.alert.note) feed.note(msg.alert.id, { note: msg.alert.note, actor: msg.actor, time: msg.time });
    } else if (msg.kind && msg.kind.startsWith("camera.") && msg.data) {
      const dev = state.devices.get(msg.device_id);
      if (dev) {
        const s = msg.data.status;
        dev.last = Object.assign({}, dev.last || {}, { status: s, fps: msg.data.fps });
        if (dev.status !== "alert") dev.status = s === "ok" ? "ok" : s === "offline" ? "offline" : "problem";
        scheduleRedraw();
      }
    } else if (msg.kind && msg.kind.startsWith("maintenance.")) {
      loadMaintenance();
    }
  }

  const stream = IOC.LiveStream({
    onSnapshot: (alerts) => {
      state.snapshotReceived = true;
      replaceAlerts(alerts);
      ready("alerts");
    },
    onEvent: onEvent,
    onStatus: () => renderConn(),
  });
  state.stream = stream; // for tests
  Object.defineProperty(state, "lastEventId", { get: () => stream.lastEventId });
  Object.defineProperty(state, "connected", { get: () => stream.connected });
  Object.defineProperty(state, "lastMessageAt", { get: () => stream.lastMessageAt });
  const renderConn = IOC.connIndicator(document.getElementById("conn-status"), stream);

  // ---- polling ---------------------------------------------------------------------------------------------
  let devicesFailed = false;
  async function pollDevices() {
    try {
      const list = await IOC.getJSON("devices");
      const devices = new Map();
      const sites = new Map();
      for (const d of list) (d.kind === "site" ? sites : devices).set(d.id, d);
      state.devices = devices;
      state.sites = sites;
      for (const id of Array.from(itemCache.keys())) if (!anyDevice(id)) itemCache.delete(id);
      devicesFailed = false;
      redraw();
      ready("devices");
    } catch (err) {
      if (!devicesFailed) toast(t("devices.error"));
      devicesFailed = true;
    } finally {
      setTimeout(pollDevices, state.devices.size > 2000 ? 20000 : 10000);
    }
  }
  async function loadMaintenance() {
    try {
      state.maintenance = await IOC.getJSON("maintenance");
      scheduleRedraw();
    } catch (err) {
      console.warn("maintenance", err);
    }
  }
  async function loadAreas() {
    try {
      const areas = await IOC.getJSON("areas");
      state.areas = new Map(areas.map((a) => [a.id, a]));
      subtreeCache.clear();
      nameAreas();
      fillAreaFilter();
      scheduleRedraw(); // the feed shows area names
    } catch (err) {
      console.warn("areas", err);
    }
  }
  function nameAreas() {
    for (const a of state.areas.values()) a._name = areaName(a.id);
    layer.setAreas(state.areas);
  }

  // ---- toolbar: filters and search (toolbar.js) ------------------------------------------------------------------
  const toolbar = IOC.Toolbar({
    state: state,
    map: map,
    areaName: areaName,
    ancestors: ancestors,
    subtree: subtree,
    devices: () => [...state.devices.values(), ...state.sites.values()],
    redraw: () => redraw(),
    focusDevice: (id) => focusDevice(id, true),
  });
  const fillAreaFilter = toolbar.fillAreaFilter;
  const fillSeverityFilter = toolbar.fillSeverityFilter;

  // ---- language ------------------------------------------------------------------------------------------------
  IOC.langToggle(document.getElementById("lang-toggle"));
  I.onChange(() => {
    nameAreas();
    fillAreaFilter();
    fillSeverityFilter();
    renderLegend();
    renderCounts();
    feed.render(true);
  });

  // ---- start: "interactive" once the outline, the devices and the alerts are on screen --------------------------
  const pending = new Set(["geo", "devices", "alerts"]);
  function ready(part) {
    pending.delete(part);
    if (pending.size || state.interactive) return;
    requestAnimationFrame(() =>
      setTimeout(() => {
        state.interactive = true;
        performance.mark("ioc-interactive");
      }, 0),
    );
  }

  I.applyStatic();
  IOC.startClock(document.getElementById("clock"));
  fillSeverityFilter();
  renderLegend();
  IOC.UserMenu(document.getElementById("user-menu"));
  // Who is signed in first (the role decides which actions show), then the data and the stream.
  IOC.auth.start().then(() => {
    drawMap()
      .catch((err) => {
        const el = document.getElementById("map-message");
        el.textContent = t("map.error", { msg: err.message });
        el.hidden = false;
      })
      .finally(() => ready("geo"));
    loadAreas();
    loadMaintenance();
    setInterval(loadMaintenance, MAINT_POLL_MS);
    IOC.getJSON("alerts?status=open")
      .then((list) => {
        if (!state.snapshotReceived) replaceAlerts(list);
        ready("alerts");
      })
      .catch((err) => console.warn("alerts", err));
    pollDevices();
    stream.start();
  });
})();
