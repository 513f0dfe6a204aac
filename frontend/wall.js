/* The video wall (/wall): a full-screen grid of camera tiles, no interaction needed.
 *
 * Cameras with open alerts move to the front by themselves (most severe, then newest); when there
 * are more cameras than tiles the others take turns. Each tile shows the camera's latest picture
 * with its health on top; a ticker at the bottom shows the newest alerts.
 *
 * Runs for days: pictures are fetched as blobs and their object URLs revoked once replaced or
 * once the tile goes; tiles exist only for what is on screen; the ticker is bounded.
 * For tests: window.wallState.
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const t = I.t;
  const h = IOC.h;

  const REFRESH_MS = 15000; // camera list and states (events update them in between)
  const THUMB_MS = 10000; // each visible tile's picture
  const PAGE_MS = 20000; // the cameras without alerts take turns at this pace
  const FORBIDDEN_RETRY_MS = 300000; // a role without pictures: ask again after 5 minutes
  const TICKER_MAX = 12;
  const TILE_MIN_PX = 480; // tiles are 480..960 px wide: 2-4 columns at 1920, 4-8 at 3840
  const TILE_MAX_PX = 960;

  const state = {
    cameras: new Map(),
    order: [],
    visible: [],
    tiles: new Map(), // id -> {el, img, url, nextAt, thumbAt}
    objectUrls: new Set(),
    ticker: [],
    page: 0,
    pages: 1,
    capacity: 0,
    refreshes: 0,
    thumbLoads: 0,
  };
  window.wallState = state;

  const grid = document.getElementById("wall-grid");
  const tickerEl = document.getElementById("ticker");

  function tileState(cam) {
    const a = cam.alert;
    if (a && IOC.ACTIVE.has(a.status)) return IOC.STATES[a.severity] ? a.severity : "major";
    if (cam.in_maintenance) return "maintenance";
    if (a && a.status === "pending") return "pending";
    if (cam.status === "offline") return "offline";
    if (cam.status === "problem") return "problem";
    if (cam.status === "unknown") return "unknown";
    return "ok";
  }
  function priority(cam) {
    const st = tileState(cam);
    if (IOC.SEV_RANK[st] !== undefined) return IOC.SEV_RANK[st]; // 0..3: alerts first
    return { pending: 4, problem: 5, offline: 6, unknown: 7, maintenance: 8, ok: 9 }[st];
  }
  function sortCameras() {
    state.order = Array.from(state.cameras.values()).sort((a, b) => {
      const p = priority(a) - priority(b);
      if (p) return p;
      if (a.alert && b.alert) return String(b.alert.since).localeCompare(String(a.alert.since));
      return String(a.name).localeCompare(String(b.name), "vi") || String(a.id).localeCompare(String(b.id));
    });
  }

  // ---- layout --------------------------------------------------------------------------------
  /** The biggest 16:9 tiles that show every camera at once; the smallest allowed if none do
   * (then the cameras without alerts take turns). */
  function layout() {
    const w = grid.clientWidth;
    const hgt = grid.clientHeight;
    const gap = Math.max(6, Math.round(w / 320));
    const fit = (c) => {
      const tw = (w - gap * (c + 1)) / c;
      const th = (tw * 9) / 16;
      return { cols: c, tileW: tw, tileH: th, rows: Math.max(1, Math.floor((hgt - gap) / (th + gap))) };
    };
    const most = Math.max(2, Math.floor(w / TILE_MIN_PX));
    const least = Math.max(1, Math.min(most, Math.round(w / TILE_MAX_PX)));
    let best = fit(most);
    for (let c = least; c <= most; c++) {
      const f = fit(c);
      if (f.cols * f.rows >= state.cameras.size) {
        best = f;
        break;
      }
    }
    const { cols, tileW, tileH, rows } = best;
    grid.style.setProperty("--cols", cols);
    grid.style.setProperty("--gap", gap + "px");
    grid.style.setProperty("--tile-h", tileH + "px");
    grid.style.setProperty("--tile-font", Math.max(12, tileW / 26) + "px");
    document.documentElement.style.setProperty("--wall-font", Math.max(14, w / 110) + "px");
    state.capacity = cols * rows;
  }

  function pickVisible() {
    const cap = state.capacity;
    const pinned = state.order.filter((c) => priority(c) <= 4);
    if (pinned.length >= cap) {
      state.pages = 1;
      return pinned.slice(0, cap);
    }
    const rest = state.order.filter((c) => priority(c) > 4);
    const slots = cap - pinned.length;
    state.pages = Math.max(1, Math.ceil(rest.length / slots));
    state.page %= state.pages;
    return pinned.concat(rest.slice(state.page * slots, state.page * slots + slots));
  }

  // ---- tiles -----------------------------------------------------------------------------------
  function makeTile(cam) {
    const img = h("img", { class: "tile-img", alt: "", hidden: true });
    const el = h("article", { class: "tile", dataset: { deviceId: cam.id } }, img, h("div", { class: "tile-noimg" }), h("div", { class: "tile-top" }), h("div", { class: "tile-bottom" }));
    const tile = { el, img, url: null, nextAt: 0, thumbAt: null };
    state.tiles.set(cam.id, tile);
    return tile;
  }
  function dropTile(id) {
    const tile = state.tiles.get(id);
    if (!tile) return;
    if (tile.url) {
      URL.revokeObjectURL(tile.url);
      state.objectUrls.delete(tile.url);
    }
    tile.img.onload = tile.img.onerror = null;
    tile.img.removeAttribute("src");
    tile.el.remove();
    state.tiles.delete(id);
  }
  function fillTile(tile, cam) {
    const st = tileState(cam);
    tile.el.className = "tile st-" + st + (tile.url ? "" : " no-img");
    tile.el.dataset.state = st;
    tile.el.dataset.priority = priority(cam);
    const a = cam.alert;
    const top = tile.el.querySelector(".tile-top");
    const label = a && (IOC.ACTIVE.has(a.status) || a.status === "pending") ? IOC.pick(a, "title", "title_en") : st === "ok" ? "" : IOC.pick(cam, "reason", "reason_en");
    IOC.put(top, IOC.stateBadge(st), label ? h("span", { class: "tile-why" }, label) : null);
    const meta = [IOC.pick(cam, "area_name", "area_name_en")];
    if (cam.fps !== null && cam.fps !== undefined && st !== "offline") meta.push(IOC.fmtNum(cam.fps) + " fps");
    if (cam.thumbnail_at) meta.push(t("wall.picture", { ago: IOC.ago(cam.thumbnail_at) }));
    IOC.put(tile.el.querySelector(".tile-bottom"), h("div", { class: "tile-name" }, cam.name), h("div", { class: "tile-meta" }, meta.join(" · ")));
    tile.el.querySelector(".tile-noimg").textContent = tile.forbidden ? t("thumb.forbidden") : st === "offline" ? t("wall.offline") : t("thumb.none");
    if (!tile.forbidden && cam.thumbnail_at !== tile.thumbAt) tile.nextAt = Math.min(tile.nextAt, Date.now());
  }

  function render() {
    sortCameras();
    const visible = pickVisible();
    state.visible = visible.map((c) => c.id);
    const want = new Set(state.visible);
    for (const id of Array.from(state.tiles.keys())) if (!want.has(id)) dropTile(id);
    let prev = null;
    for (const cam of visible) {
      const tile = state.tiles.get(cam.id) || makeTile(cam);
      fillTile(tile, cam);
      const at = prev ? prev.nextSibling : grid.firstChild;
      if (at !== tile.el) grid.insertBefore(tile.el, at);
      prev = tile.el;
    }
    renderCounts();
  }
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }

  async function loadThumb(id) {
    const tile = state.tiles.get(id);
    if (!tile || tile.loading) return;
    tile.loading = true;
    tile.nextAt = Date.now() + THUMB_MS + Math.random() * 2000;
    try {
      const res = await IOC.apiFetch(IOC.API + "/cameras/" + encodeURIComponent(id) + "/thumbnail.jpg", { cache: "no-store" });
      if (res.status === 403) {
        // Not allowed to see pictures (a leader): a plain placeholder; ask again in a while.
        tile.forbidden = true;
        tile.nextAt = Date.now() + FORBIDDEN_RETRY_MS;
        const cam = state.cameras.get(id);
        if (cam) fillTile(tile, cam);
        return;
      }
      tile.forbidden = false;
      if (!res.ok) return;
      const blob = await res.blob();
      if (state.tiles.get(id) !== tile) return; // the tile went while we waited
      const url = URL.createObjectURL(blob);
      state.objectUrls.add(url);
      const old = tile.url;
      tile.img.onload = () => {
        if (old) {
          URL.revokeObjectURL(old);
          state.objectUrls.delete(old);
        }
        tile.img.hidden = false;
        tile.el.classList.remove("no-img");
      };
      tile.img.onerror = () => {
        URL.revokeObjectURL(url);
        state.objectUrls.delete(url);
      };
      tile.url = url;
      tile.img.src = url;
      const cam = state.cameras.get(id);
      tile.thumbAt = cam ? cam.thumbnail_at : null;
      state.thumbLoads++;
    } catch (err) {
      console.warn("thumbnail", id, err);
    } finally {
      tile.loading = false;
    }
  }
  setInterval(() => {
    const now = Date.now();
    for (const [id, tile] of state.tiles) if (tile.nextAt <= now) loadThumb(id);
  }, 500);

  function renderCounts() {
    const c = { total: state.cameras.size, alert: 0, problem: 0, ok: 0 };
    for (const cam of state.cameras.values()) {
      const st = tileState(cam);
      if (st === "ok") c.ok++;
      else if (IOC.SEV_RANK[st] !== undefined || st === "pending") c.alert++;
      else c.problem++;
    }
    IOC.put(document.getElementById("wall-counts"),
      h("span", { class: "wc" }, h("b", null, IOC.fmtNum(c.total, 0)), " " + t("wall.cameras")),
      h("span", { class: "wc" }, IOC.shapeIcon("ok", 16), h("b", null, IOC.fmtNum(c.ok, 0)), " " + t("state.ok")),
      h("span", { class: "wc" }, IOC.shapeIcon("problem", 16), h("b", null, IOC.fmtNum(c.problem, 0)), " " + t("wall.problems")),
      h("span", { class: "wc wc-alert" }, IOC.shapeIcon("major", 16), h("b", null, IOC.fmtNum(c.alert, 0)), " " + t("wall.alerts")),
    );
    document.getElementById("wall-sub").textContent =
      state.pages > 1 ? t("wall.page", { p: state.page + 1, n: state.pages, m: IOC.fmtNum(state.cameras.size, 0) }) : t("wall.all", { m: IOC.fmtNum(state.cameras.size, 0) });
  }

  // ---- ticker ------------------------------------------------------------------------------------
  function pushTicker(a, when) {
    state.ticker = [{ a: a, time: when || a.fired_at || a.started_at }].concat(state.ticker.filter((x) => x.a.id !== a.id)).slice(0, TICKER_MAX);
    renderTicker();
  }
  function renderTicker() {
    IOC.put(tickerEl,
      ...state.ticker.map(({ a, time }) =>
        h(
          "li",
          { class: "tk sev-" + a.severity, dataset: { alertId: a.id } },
          IOC.shapeIcon(IOC.STATES[a.severity] ? a.severity : "major", 16),
          h("time", null, I.formatTime(time)),
          h("b", null, IOC.pick(a, "title", "title_en")),
          h("span", null, a.device_name || a.device_id),
        ),
      ),
    );
  }

  // ---- data ----------------------------------------------------------------------------------------
  async function refresh() {
    try {
      const list = await IOC.getJSON("summary/wall");
      const before = state.cameras.size;
      state.cameras = new Map(list.map((c) => [c.id, c]));
      state.refreshes++;
      if (state.cameras.size !== before) layout();
      render();
    } catch (err) {
      console.warn("wall", err);
    }
  }
  let refreshSoon = null;
  function reconcile() {
    clearTimeout(refreshSoon);
    refreshSoon = setTimeout(refresh, 1500);
  }

  function onAlert(a, kind, time) {
    if (kind === "alert.firing" || kind === "alert.flapping" || kind === "alert.escalated") pushTicker(a, time);
    const cam = state.cameras.get(a.device_id);
    if (!cam) return;
    const open = a.status !== "resolved";
    const rank = (x) => (IOC.ACTIVE.has(x.status) ? 0 : 10) + (IOC.SEV_RANK[x.severity] ?? 5);
    if (!open) {
      if (cam.alert && cam.alert.id === a.id) cam.alert = null;
    } else if (!cam.alert || cam.alert.id === a.id || rank(a) <= rank(cam.alert)) {
      cam.alert = { id: a.id, severity: a.severity, status: a.status, title: a.title, title_en: a.title_en, since: a.fired_at || a.started_at };
    }
    if (IOC.ACTIVE.has(a.status)) cam.status = "alert";
    scheduleRender();
    reconcile(); // the server has the full picture (other open alerts, the reason text)
  }

  const stream = IOC.LiveStream({
    query: { kind: "alert.,camera.,maintenance." },
    onSnapshot: () => reconcile(),
    onEvent: (msg) => {
      if (msg.alert) onAlert(msg.alert, msg.kind, msg.time);
      else if (msg.kind.startsWith("camera.") && msg.data) {
        const cam = state.cameras.get(msg.device_id);
        if (cam) {
          cam.health = msg.data.status;
          cam.fps = msg.data.fps === undefined ? cam.fps : msg.data.fps;
          if (cam.status !== "alert") cam.status = msg.data.status === "ok" ? "ok" : msg.data.status === "offline" ? "offline" : "problem";
          scheduleRender();
        }
        reconcile();
      } else if (msg.kind.startsWith("maintenance.")) reconcile();
    },
  });

  // ---- start ---------------------------------------------------------------------------------------
  I.applyStatic();
  IOC.startClock(document.getElementById("clock"));
  IOC.connIndicator(document.getElementById("conn-status"), stream);
  layout();
  window.addEventListener("resize", () => {
    layout();
    render();
  });
  I.onChange(() => {
    render();
    renderTicker();
  });
  setInterval(() => {
    state.page = (state.page + 1) % state.pages;
    if (state.pages > 1) render();
  }, PAGE_MS);
  setInterval(() => {
    for (const [id, tile] of state.tiles) {
      const cam = state.cameras.get(id);
      if (cam) fillTile(tile, cam); // "picture N s ago" keeps counting
    }
  }, 5000);
  IOC.UserMenu(document.getElementById("user-menu"));
  // Signed in first; the session then renews itself for as long as the wall runs (auth.js).
  IOC.auth.start().then(() => {
    setInterval(refresh, REFRESH_MS);
    IOC.getJSON("alerts?status=open&limit=50")
      .then((list) =>
        list
          .filter((a) => IOC.ACTIVE.has(a.status))
          .sort((x, y) => String(x.fired_at || x.started_at).localeCompare(String(y.fired_at || y.started_at)))
          .forEach((a) => pushTicker(a)),
      )
      .catch(() => {});
    refresh();
    stream.start();
  });
  // Hide the pointer on a wall; nobody is meant to touch it.
  document.body.classList.add("no-cursor");
})();
