/* Signing in, for every screen and the sign-in page (window.IOCAuth; common.js re-exports it as
 * IOC.auth). Loaded after i18n.js, before common.js.
 *
 * The session is two HttpOnly cookies the server sets: ioc_access (15 min, sent with every request
 * and with the websocket handshake) and ioc_refresh (only sent to /api/v1/auth). This script never
 * sees a token and never stores one, nor puts one in an address. All it keeps, in localStorage and
 * shared by the tabs of this browser, is *when* the access cookie was last renewed and when it
 * runs out (timestamps, not secrets), so that the tabs renew it once, not each on its own.
 *
 * - start(): who is signed in (GET /auth/me); pages wait for it before loading anything.
 * - apiFetch(): fetch with the cookies; on 401 renew once and retry once; when renewing is refused,
 *   to the sign-in page with ?next=<this page>.
 * - refresh(): POST /auth/refresh, one at a time across tabs. Answers true (renewed), false (the
 *   session is over) or null (no answer: server restarting, network down — try again later; a wall
 *   must not be signed out by a power cut).
 * - renews on its own at 80 % of the access cookie's life, when the tab becomes visible again and
 *   after the machine slept, so a wall stays signed in for as long as its session is valid.
 * - can(action): what the role may do; it only hides buttons, the server decides.
 */
(function () {
  "use strict";

  const AUTH = "/api/v1/auth";
  const K_RENEWED = "ioc.auth.renewedAt"; // ms since epoch, this browser
  const K_EXPIRES = "ioc.auth.expiresAt"; // ms since epoch: the access cookie's end
  const K_LEASE = "ioc.auth.renewing"; // ms since epoch: a tab is renewing until then
  const K_SIGNED_OUT = "ioc.auth.signedOutAt";
  const RENEW_AT = 0.8; // of the access cookie's life
  const DEFAULT_LIFE_S = 900;
  const RECHECK_MS = 60000; // timers run late after sleep: look again at least this often
  const RETRY_MIN_MS = 5000;
  const RETRY_MAX_MS = 120000;
  const LEASE_MS = 10000;

  const ALERT_ACTIONS = ["alert.ack", "alert.assign", "alert.note", "alert.resolve"];
  const PERMISSIONS = {
    admin: new Set(ALERT_ACTIONS.concat(["maintenance"])),
    supervisor: new Set(ALERT_ACTIONS.concat(["maintenance"])),
    operator: new Set(ALERT_ACTIONS),
    leader: new Set(), // read-only
  };

  const self = {
    user: null,
    sessionExpiresAt: null,
    leaving: false,
  };
  const listeners = [];
  const mem = { renewed: 0, expires: 0 }; // when localStorage is unavailable
  let started = null;
  let timer = null;
  let failures = 0;
  let inflight = null;

  // ---- shared timestamps --------------------------------------------------------------------
  function readNum(key) {
    try {
      const v = Number(window.localStorage.getItem(key));
      return isFinite(v) && v > 0 ? v : 0;
    } catch (_) {
      return 0;
    }
  }
  function writeNum(key, v) {
    try {
      window.localStorage.setItem(key, String(v));
    } catch (_) {
      /* storage disabled: this tab keeps its own copy in mem */
    }
  }
  function times() {
    return { renewed: Math.max(mem.renewed, readNum(K_RENEWED)), expires: Math.max(mem.expires, readNum(K_EXPIRES)) };
  }
  /** The server issued a new access cookie living expiresIn seconds (login, refresh). */
  function noteIssued(expiresIn) {
    const now = Date.now();
    const life = (Number(expiresIn) > 0 ? Number(expiresIn) : DEFAULT_LIFE_S) * 1000;
    mem.renewed = now;
    mem.expires = now + life;
    writeNum(K_RENEWED, mem.renewed);
    writeNum(K_EXPIRES, mem.expires);
    schedule();
  }
  const pageStart = Date.now();
  function dueAt() {
    const t = times();
    // Unknown (storage cleared, or a cookie set by a script, as the dashboard bench does): take
    // the cookie as fresh. Should it run out sooner, the first 401 renews it anyway.
    if (!t.renewed || t.expires <= t.renewed) return pageStart + DEFAULT_LIFE_S * 1000 * RENEW_AT;
    return t.renewed + (t.expires - t.renewed) * RENEW_AT;
  }

  // ---- where to go --------------------------------------------------------------------------
  /** A same-origin path to go to after signing in; anything else (another site, "//host",
   * "/\\host", a URL with a scheme, control characters, the sign-in page itself) gives "/". */
  function safeNext(raw) {
    if (typeof raw !== "string" || raw.length > 2000 || raw[0] !== "/" || raw[1] === "/") return "/";
    if (/[\u0000-\u001f\u007f\\]/.test(raw)) return "/";
    let u;
    try {
      u = new URL(raw, window.location.origin);
    } catch (_) {
      return "/";
    }
    if (u.origin !== window.location.origin) return "/";
    if (u.pathname === "/login" || u.pathname.startsWith("/api/")) return "/";
    return u.pathname + u.search + u.hash;
  }
  function loginUrl(reason) {
    const q = new URLSearchParams();
    q.set("next", window.location.pathname + window.location.search);
    if (reason) q.set("reason", reason);
    return "/login?" + q.toString();
  }
  /** Leave for the sign-in page, keeping this page as ?next=. reason: "expired" | "signed_out". */
  function toLogin(reason) {
    if (self.leaving) return;
    self.leaving = true;
    clearTimeout(timer);
    emit("leaving");
    window.location.replace(loginUrl(reason));
  }

  // ---- renewing -------------------------------------------------------------------------------
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  /** One tab at a time: the Web Locks API where the page is a secure context (https, 127.0.0.1,
   * localhost), a lease in localStorage elsewhere (plain http on a LAN address). */
  async function exclusively(fn) {
    if (window.navigator.locks && window.navigator.locks.request) return window.navigator.locks.request("ioc-auth-refresh", fn);
    const until = readNum(K_LEASE);
    if (until > Date.now() && until < Date.now() + 2 * LEASE_MS) {
      while (Date.now() < until && readNum(K_LEASE) === until) await sleep(200);
    }
    writeNum(K_LEASE, Date.now() + LEASE_MS);
    try {
      return await fn();
    } finally {
      writeNum(K_LEASE, 0);
    }
  }

  async function renewNow(seen) {
    // Another tab renewed while we waited for our turn: its cookie is ours too.
    if (times().renewed > seen) return true;
    let res;
    try {
      res = await fetch(AUTH + "/refresh", { method: "POST", credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    } catch (_) {
      return null;
    }
    if (res.ok) {
      let body = null;
      try {
        body = await res.json();
      } catch (_) {
        /* renewed all the same */
      }
      if (body && body.user) setUser(body.user);
      noteIssued(body && body.expires_in);
      return true;
    }
    if (res.status === 401 || res.status === 403) return false;
    return null; // 429, 5xx: no verdict on the session
  }

  /** Renew the access cookie. seen: the renewal time the caller knew of when it got its 401. */
  function refresh(seen) {
    if (self.leaving) return Promise.resolve(false);
    const known = seen === undefined ? times().renewed : seen;
    if (!inflight) {
      inflight = exclusively(() => renewNow(known)).finally(() => {
        inflight = null;
      });
    }
    return inflight;
  }

  function schedule(delayMs) {
    clearTimeout(timer);
    if (!started || self.leaving) return;
    const wait = delayMs !== undefined ? delayMs : Math.max(0, dueAt() - Date.now());
    timer = setTimeout(renewIfDue, Math.min(wait, RECHECK_MS));
  }
  async function renewIfDue() {
    if (self.leaving) return;
    if (Date.now() < dueAt()) {
      schedule();
      return;
    }
    const ok = await refresh();
    if (ok === false) {
      toLogin("expired");
      return;
    }
    if (ok === null) {
      failures++;
      schedule(Math.min(RETRY_MAX_MS, RETRY_MIN_MS * Math.pow(2, failures - 1)));
      return;
    }
    failures = 0;
    schedule();
  }

  // ---- requests -------------------------------------------------------------------------------
  function isSessionCall(url) {
    return /\/api\/v1\/auth\/(login|refresh|logout)(\?|$)/.test(url);
  }
  /** fetch() with the session: a 401 renews once and retries once; a refused renewal leaves for
   * the sign-in page (the 401 answer is still returned, for the caller's error path). */
  async function apiFetch(url, init) {
    const opts = Object.assign({ credentials: "same-origin" }, init || {});
    const seen = times().renewed;
    const res = await fetch(url, opts);
    if (res.status !== 401 || isSessionCall(url) || self.leaving) return res;
    const ok = await refresh(seen);
    if (ok === false) {
      toLogin("expired");
      return res;
    }
    if (ok === null) return res; // the server did not answer: the caller's error path, retried later
    const again = await fetch(url, opts);
    if (again.status === 401) toLogin("expired"); // renewed, yet refused: nothing more to try here
    return again;
  }

  async function loadMe() {
    const res = await apiFetch(AUTH + "/me", { cache: "no-store", headers: { Accept: "application/json" } });
    if (!res.ok) return res.status;
    const body = await res.json();
    setUser(body.user);
    self.sessionExpiresAt = body.session_expires_at || null;
    return 200;
  }

  /** Who is signed in. Resolves once known; never resolves when the page is leaving for the
   * sign-in page. Waits (and retries) while the server does not answer. */
  function start() {
    if (started) return started;
    started = (async () => {
      for (let attempt = 0; ; attempt++) {
        let status = 0;
        try {
          status = await loadMe();
        } catch (_) {
          status = 0;
        }
        if (self.leaving) return new Promise(() => {}); // refused: on the way to the sign-in page
        if (status === 200) break;
        await sleep(Math.min(30000, 1000 * Math.pow(2, attempt)));
      }
      schedule();
      document.addEventListener("visibilitychange", () => {
        if (document.visibilityState === "visible") renewIfDue();
      });
      // Back to this page from the browser's cache after signing out: check again.
      window.addEventListener("pageshow", (ev) => {
        if (ev.persisted) loadMe().catch(() => {});
      });
      // Signed out in another tab: the session is gone here too.
      window.addEventListener("storage", (ev) => {
        if (ev.key === K_SIGNED_OUT && ev.newValue) toLogin("signed_out");
        else if (ev.key === K_RENEWED) schedule();
      });
      return self.user;
    })();
    return started;
  }

  /** Sign out: the server revokes the session and clears the cookies; then the sign-in page.
   * Resolves false (and stays) when the server could not be reached: leaving then would let the
   * sign-in page renew the still-valid session and come straight back. */
  async function signOut() {
    clearTimeout(timer);
    const logout = () =>
      fetch(AUTH + "/logout", { method: "POST", credentials: "same-origin", cache: "no-store" }).catch(() => null);
    let res = await logout();
    let over = false; // the session had already ended
    if (res && res.status === 401) {
      // The access cookie ran out: renew it so the server can end the session itself.
      const renewed = await refresh();
      if (renewed === true) res = await logout();
      else over = renewed === false;
    }
    if (!over && !(res && res.ok)) {
      schedule();
      return false;
    }
    mem.renewed = mem.expires = 0;
    writeNum(K_RENEWED, 0);
    writeNum(K_EXPIRES, 0);
    writeNum(K_SIGNED_OUT, Date.now());
    toLogin("signed_out");
    return true;
  }

  // ---- who and what ---------------------------------------------------------------------------
  function setUser(u) {
    if (!u) return;
    self.user = u;
    emit("user");
  }
  function emit(what) {
    for (const fn of listeners) {
      try {
        fn(what, self.user);
      } catch (err) {
        console.warn("auth listener", err);
      }
    }
  }
  function can(action) {
    const role = self.user && self.user.role;
    const allowed = PERMISSIONS[role];
    return !!allowed && allowed.has(action);
  }

  Object.assign(self, {
    start,
    apiFetch,
    refresh,
    signOut,
    toLogin,
    loginUrl,
    safeNext,
    noteIssued,
    can,
    onChange(fn) {
      listeners.push(fn);
    },
  });
  Object.defineProperty(self, "role", { get: () => (self.user ? self.user.role : null) });
  window.IOCAuth = self;
})();
