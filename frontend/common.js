/* Shared by the three screens (map, wall, leader): DOM helper, API calls, number formats, the
 * display states (colour AND shape: state is never shown by colour alone) and the live stream.
 * Plain script, no build step; everything hangs off window.IOC.
 */
(function () {
  "use strict";

  const I = window.I18N;
  const t = I.t;
  const API = "/api/v1";

  // ---- DOM ------------------------------------------------------------------------------
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
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return el;
  }

  /** Replace an element's children, skipping null/false (replaceChildren would print "null"). */
  function put(el, ...children) {
    el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
    return el;
  }

  // ---- API --------------------------------------------------------------------------------
  // Every request goes through the session (auth.js): cookies only, a 401 renews and retries once.
  const auth = window.IOCAuth;

  async function errorText(res) {
    let detail = null;
    try {
      const body = await res.json();
      detail = body && body.detail;
    } catch (_) {
      /* not JSON */
    }
    const code = detail && typeof detail === "object" ? detail.code : null;
    if (res.status === 401) return t("err.auth");
    if (code === "forbidden" || (res.status === 403 && !code)) return t("err.forbidden");
    if (typeof detail === "string") return detail;
    if (detail && detail.message) return detail.message;
    if (Array.isArray(detail) && detail.length && detail[0].msg) {
      return detail.map((d) => d.msg).join("; "); // FastAPI's validation errors
    }
    return detail ? JSON.stringify(detail) : res.status + " " + res.statusText;
  }

  /** An Error carrying the HTTP status (err.status), for callers that tell 403 from the rest. */
  async function failure(res) {
    const err = new Error(await errorText(res));
    err.status = res.status;
    return err;
  }

  async function getJSON(path) {
    const res = await auth.apiFetch(path.startsWith("/") ? path : API + "/" + path, {
      headers: { Accept: "application/json" },
    });
    if (!res.ok) throw await failure(res);
    return res.json();
  }

  async function send(method, path, body) {
    const res = await auth.apiFetch(API + path, {
      method: method,
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw await failure(res);
    return res.status === 204 ? null : res.json();
  }

  // ---- formats ------------------------------------------------------------------------------
  const numFmts = {};
  function fmtNum(v, digits) {
    if (v === null || v === undefined || v === "" || isNaN(Number(v))) return "–";
    const d = digits === undefined ? 1 : digits;
    const key = I.lang + d;
    if (!numFmts[key]) {
      numFmts[key] = new Intl.NumberFormat(I.lang === "vi" ? "vi-VN" : "en-GB", {
        minimumFractionDigits: 0,
        maximumFractionDigits: d,
      });
    }
    return numFmts[key].format(Number(v));
  }
  /** A percentage from the API (already rounded to one decimal there): shown exactly. */
  function fmtPct(v) {
    return v === null || v === undefined ? "–" : fmtNum(v, 1) + " %";
  }
  function pick(obj, vi, en) {
    if (!obj) return "";
    return (I.lang === "en" ? obj[en] || obj[vi] : obj[vi] || obj[en]) || "";
  }
  function ago(iso) {
    if (!iso) return "";
    const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
    if (s < 90) return t("ago.s", { n: s });
    if (s < 5400) return t("ago.m", { n: Math.round(s / 60) });
    return t("ago.h", { n: Math.round(s / 3600) });
  }

  // ---- states: colour + shape -------------------------------------------------------------
  const SEV_RANK = { critical: 0, major: 1, minor: 2, info: 3 };
  const ACTIVE = new Set(["firing", "acknowledged", "flapping"]);
  const OPEN = new Set(["pending", "firing", "acknowledged", "flapping", "suppressed"]);

  // Worst first. Alert states take the severity of the device's worst active alert.
  const STATES = {
    critical: { color: "#ff5c5c", shape: "triangle", label: "state.critical" },
    major: { color: "#ff9f1a", shape: "triangle", label: "state.major" },
    minor: { color: "#ffd23f", shape: "triangle", label: "state.minor" },
    info: { color: "#5cc8ff", shape: "triangle", label: "state.info" },
    pending: { color: "#ffd23f", shape: "triangle-open", label: "state.pending" },
    problem: { color: "#c58af9", shape: "diamond", label: "state.problem" },
    offline: { color: "#a3adbf", shape: "square-x", label: "state.offline" },
    maintenance: { color: "#6aa8ff", shape: "square-open", label: "state.maintenance" },
    unknown: { color: "#a3adbf", shape: "ring", label: "state.unknown" },
    ok: { color: "#35c06f", shape: "circle", label: "state.ok" },
  };
  const STATE_ORDER = Object.keys(STATES);
  const STATE_RANK = Object.fromEntries(STATE_ORDER.map((s, i) => [s, i]));

  /** Outline of a shape centred on (x, y), "radius" r, added to the current canvas path. */
  function tracePath(ctx, shape, x, y, r) {
    switch (shape) {
      case "triangle":
      case "triangle-open":
        ctx.moveTo(x, y - r * 1.25);
        ctx.lineTo(x + r * 1.15, y + r * 0.8);
        ctx.lineTo(x - r * 1.15, y + r * 0.8);
        ctx.closePath();
        break;
      case "diamond":
        ctx.moveTo(x, y - r * 1.25);
        ctx.lineTo(x + r * 1.1, y);
        ctx.lineTo(x, y + r * 1.25);
        ctx.lineTo(x - r * 1.1, y);
        ctx.closePath();
        break;
      case "square-x":
      case "square-open":
        ctx.rect(x - r * 0.9, y - r * 0.9, r * 1.8, r * 1.8);
        break;
      default:
        ctx.moveTo(x + r, y);
        ctx.arc(x, y, r, 0, Math.PI * 2);
    }
  }
  function isHollow(shape) {
    return shape === "ring" || shape === "triangle-open" || shape === "square-open";
  }

  /** The same shapes as a small inline SVG (legend, badges, feed, wall, leader). */
  function shapeIcon(state, size) {
    const s = STATES[state] || STATES.unknown;
    const px = size || 14;
    const canvas = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    canvas.setAttribute("viewBox", "-10 -10 20 20");
    canvas.setAttribute("width", px);
    canvas.setAttribute("height", px);
    canvas.setAttribute("class", "shape-icon");
    canvas.setAttribute("aria-hidden", "true");
    const r = 6.5;
    const pts = {
      triangle: [[0, -r * 1.25], [r * 1.15, r * 0.8], [-r * 1.15, r * 0.8]],
      diamond: [[0, -r * 1.25], [r * 1.1, 0], [0, r * 1.25], [-r * 1.1, 0]],
    };
    let el;
    const shape = s.shape;
    if (shape.startsWith("triangle") || shape === "diamond") {
      el = document.createElementNS(canvas.namespaceURI, "polygon");
      el.setAttribute("points", pts[shape.startsWith("triangle") ? "triangle" : "diamond"].map((p) => p.join(",")).join(" "));
    } else if (shape.startsWith("square")) {
      el = document.createElementNS(canvas.namespaceURI, "rect");
      el.setAttribute("x", -r * 0.9);
      el.setAttribute("y", -r * 0.9);
      el.setAttribute("width", r * 1.8);
      el.setAttribute("height", r * 1.8);
    } else {
      el = document.createElementNS(canvas.namespaceURI, "circle");
      el.setAttribute("r", r);
    }
    const hollow = isHollow(shape);
    el.setAttribute("fill", hollow ? "none" : s.color);
    el.setAttribute("stroke", hollow ? s.color : "#0b111c");
    el.setAttribute("stroke-width", hollow ? 2.6 : 1.2);
    canvas.appendChild(el);
    if (shape === "square-x") {
      const x = document.createElementNS(canvas.namespaceURI, "path");
      x.setAttribute("d", "M-3.5,-3.5L3.5,3.5M3.5,-3.5L-3.5,3.5");
      x.setAttribute("stroke", "#0b111c");
      x.setAttribute("stroke-width", 2);
      canvas.appendChild(x);
    } else if (shape === "triangle") {
      const x = document.createElementNS(canvas.namespaceURI, "path");
      x.setAttribute("d", "M0,-4.2L0,1.2M0,3.2L0,4.4");
      x.setAttribute("stroke", "#0b111c");
      x.setAttribute("stroke-width", 2);
      canvas.appendChild(x);
    }
    return canvas;
  }

  /** Badge: shape + text (the text carries the meaning; shape and colour help the eye). */
  function stateBadge(state, text) {
    return h("span", { class: "state-badge st-" + state }, shapeIcon(state, 16), h("span", null, text || t((STATES[state] || STATES.unknown).label)));
  }

  // ---- live stream --------------------------------------------------------------------------
  /**
   * The websocket client: snapshot + events, resumes with ?since=<last id> after a drop, resyncs
   * when told to, treats a silent socket as dead. onSnapshot(alerts), onEvent(msg),
   * onStatus(state) with state "live" | "connecting" | "reconnecting" | "resync".
   *
   * Signed in by the ioc_access cookie the browser sends with the handshake (no token in the
   * address). Close code 4401 (no session, or it ended or was revoked): renew once and reconnect
   * with ?since=; a refused renewal leaves for the sign-in page (auth.js). A handshake that fails
   * before the socket opens (server restarting, or refused) asks /auth/me, which does the same.
   */
  function LiveStream(opts) {
    const BACKOFF_MIN_MS = 500;
    const BACKOFF_MAX_MS = 10000;
    const STALE_MS = 30000;
    const self = {
      connected: false,
      lastMessageAt: null,
      lastEventId: null,
      status: "connecting",
      start: connect,
      stop: stop,
    };
    let ws = null;
    let attempt = 0;
    let timer = null;
    let everConnected = false;
    let stopped = false;
    let authCloses = 0; // 4401 closes since the last message: renewing did not help after 3
    const AUTH_CLOSE = 4401;
    const AUTH_CLOSES_MAX = 3;

    function status(s) {
      self.status = s;
      self.connected = s === "live";
      if (opts.onStatus) opts.onStatus(s);
    }
    function url() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const q = new URLSearchParams(opts.query || {});
      if (self.lastEventId !== null) q.set("since", String(self.lastEventId));
      const qs = q.toString();
      return proto + "//" + location.host + API + "/stream" + (qs ? "?" + qs : "");
    }
    function drop() {
      if (!ws) return;
      const old = ws;
      ws = null;
      old.onopen = old.onmessage = old.onclose = old.onerror = null;
      try {
        old.close();
      } catch (_) {
        /* already closed */
      }
    }
    function schedule() {
      if (timer || stopped || auth.leaving) return;
      status(everConnected ? "reconnecting" : "connecting");
      const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * Math.pow(2, attempt));
      attempt++;
      timer = setTimeout(() => {
        timer = null;
        connect();
      }, Math.round(base * (0.75 + Math.random() * 0.5)));
    }
    function connect() {
      drop();
      if (stopped) return;
      let sock;
      try {
        sock = new WebSocket(url());
      } catch (_) {
        schedule();
        return;
      }
      ws = sock;
      let opened = false;
      sock.onopen = () => {
        opened = true;
        everConnected = true;
        status("live");
      };
      sock.onmessage = (ev) => {
        self.lastMessageAt = new Date();
        attempt = 0;
        authCloses = 0;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        handle(msg);
      };
      sock.onclose = (ev) => {
        if (ws !== sock) return;
        ws = null;
        if (ev.code === AUTH_CLOSE) reauthenticate();
        else if (!opened) recheck();
        else schedule();
      };
    }
    async function reauthenticate() {
      if (stopped || auth.leaving) return;
      status(everConnected ? "reconnecting" : "connecting");
      authCloses++;
      if (authCloses > AUTH_CLOSES_MAX) {
        auth.toLogin("expired");
        return;
      }
      const ok = await auth.refresh();
      if (ok === false) auth.toLogin("expired");
      else if (ok === true && authCloses === 1) connect();
      else schedule();
    }
    async function recheck() {
      // The handshake failed: a refused session shows here as a plain failure (1006). /auth/me
      // renews the session or leaves for the sign-in page; a server that is down just throws.
      try {
        await auth.apiFetch(API + "/auth/me", { cache: "no-store", headers: { Accept: "application/json" } });
      } catch (_) {
        /* not reachable: back off */
      }
      if (!auth.leaving) schedule();
    }
    function handle(msg) {
      if (msg.type === "snapshot") {
        if (msg.watermark !== undefined && msg.watermark !== null) self.lastEventId = msg.watermark;
        if (!self.connected) status("live");
        opts.onSnapshot(msg.alerts || []);
      } else if (msg.type === "event") {
        if (typeof msg.id === "number" && typeof self.lastEventId === "number" && msg.id <= self.lastEventId) return;
        if (msg.id !== undefined && msg.id !== null) self.lastEventId = msg.id;
        opts.onEvent(msg);
      } else if (msg.type === "resync") {
        self.lastEventId = null; // start over with a fresh snapshot
        status("resync");
        attempt = 0;
        connect();
      } else if (msg.type === "heartbeat" && !self.connected) {
        status("live");
      }
    }
    function stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(watchdog);
      drop();
    }
    const watchdog = setInterval(() => {
      if (ws && self.connected && self.lastMessageAt && Date.now() - self.lastMessageAt.getTime() > STALE_MS) {
        drop();
        schedule();
      }
    }, 1000);
    return self;
  }

  /** "Live" / "Reconnecting…" / "last update N s ago" in an element with .conn-text, .conn-age. */
  function connIndicator(el, stream) {
    const text = el.querySelector(".conn-text");
    const age = el.querySelector(".conn-age");
    const KEYS = { live: "conn.live", connecting: "conn.connecting", reconnecting: "conn.reconnecting", resync: "conn.resync" };
    function render() {
      el.dataset.state = stream.status === "live" ? "live" : "reconnecting";
      text.textContent = t(KEYS[stream.status] || "conn.connecting");
      age.textContent = stream.lastMessageAt
        ? t("conn.ago", { n: Math.max(0, Math.round((Date.now() - stream.lastMessageAt.getTime()) / 1000)) })
        : "";
    }
    setInterval(render, 1000);
    I.onChange(render);
    render();
    return render;
  }

  function startClock(el) {
    const fmt = new Intl.DateTimeFormat("vi-VN", { timeZone: I.TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    const tick = () => (el.textContent = fmt.format(new Date()));
    tick();
    setInterval(tick, 1000);
  }

  /** What the signed-in role may do (hides buttons; the server decides). */
  function can(action) {
    return auth.can(action);
  }

  function langToggle(button) {
    button.addEventListener("click", () => I.setLang(I.lang === "vi" ? "en" : "vi"));
  }

  window.IOC = {
    API,
    auth,
    can,
    apiFetch: auth.apiFetch,
    h,
    put,
    getJSON,
    send,
    fmtNum,
    fmtPct,
    pick,
    ago,
    SEV_RANK,
    ACTIVE,
    OPEN,
    STATES,
    STATE_ORDER,
    STATE_RANK,
    tracePath,
    isHollow,
    shapeIcon,
    stateBadge,
    LiveStream,
    connIndicator,
    startClock,
    langToggle,
  };
})();
