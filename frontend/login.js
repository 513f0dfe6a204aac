/* The sign-in page (/login?next=<path>[&reason=expired|signed_out]).
 *
 * POST /api/v1/auth/login with JSON; the server answers with the user and sets the session
 * cookies (HttpOnly). The tokens in the answer's body are not kept anywhere: the cookies are the
 * session. Then on to `next` — only a path of this site (auth.js safeNext), never another site.
 *
 * Sent here by the server (a page opened without a valid access cookie, e.g. a wall reloaded after
 * a night): the refresh cookie may still be valid, so the page first tries to renew the session
 * quietly and goes straight back. Not when the screen itself sent us here (reason=...): it has
 * already tried.
 *
 * For tests: #login-error[data-code] is the server's error code.
 */
(function () {
  "use strict";

  const I = window.I18N;
  const t = I.t;
  const auth = window.IOCAuth;

  const params = new URLSearchParams(window.location.search);
  const next = auth.safeNext(params.get("next") || "/");
  const reason = params.get("reason");

  const form = document.getElementById("login-form");
  const user = document.getElementById("username");
  const pass = document.getElementById("password");
  const submit = document.getElementById("login-submit");
  const errorEl = document.getElementById("login-error");
  const infoEl = document.getElementById("login-info");

  let busy = false;
  let waitUntil = 0; // locked / rate limited: no new attempt before this (ms since epoch)
  let waitFor = null; // the username a lock is about (another account may still sign in)
  let waitTimer = null;
  let shown = null; // {key, code, status} of the message on screen, re-rendered on language change

  function go() {
    pass.value = "";
    window.location.replace(next);
  }

  function secondsLeft() {
    return Math.max(0, Math.ceil((waitUntil - Date.now()) / 1000));
  }

  function render() {
    submit.textContent = busy ? t("login.submitting") : t("login.submit");
    submit.disabled = busy || secondsLeft() > 0;
    if (reason === "expired" || reason === "signed_out") {
      infoEl.textContent = t("login.reason." + reason);
      infoEl.hidden = !!shown;
    }
    if (!shown) {
      errorEl.hidden = true;
      errorEl.textContent = "";
      delete errorEl.dataset.code;
      user.removeAttribute("aria-invalid");
      pass.removeAttribute("aria-invalid");
      return;
    }
    errorEl.hidden = false;
    errorEl.dataset.code = shown.code;
    errorEl.textContent = t(shown.key, { n: secondsLeft(), status: shown.status });
    const wrong = shown.code === "bad_credentials";
    const missing = shown.code === "missing";
    user.setAttribute("aria-invalid", wrong || (missing && !user.value.trim()) ? "true" : "false");
    pass.setAttribute("aria-invalid", wrong || (missing && !pass.value) ? "true" : "false");
  }

  function show(key, code, status) {
    shown = { key: key, code: code, status: status || "" };
    render();
  }

  function startWait(seconds) {
    waitUntil = Date.now() + Math.max(1, seconds) * 1000;
    clearInterval(waitTimer);
    waitTimer = setInterval(() => {
      if (secondsLeft() <= 0) {
        clearInterval(waitTimer);
        waitTimer = null;
      }
      render();
    }, 1000);
  }

  function retryAfter(res, detail) {
    const fromBody = detail && Number(detail.retry_after);
    if (fromBody > 0) return Math.ceil(fromBody);
    const header = Number(res.headers.get("Retry-After"));
    return header > 0 ? Math.ceil(header) : 30;
  }

  async function signIn() {
    if (busy || secondsLeft() > 0) return;
    const username = user.value.trim();
    if (!username || !pass.value) {
      show("login.err.missing", "missing");
      (username ? pass : user).focus();
      return;
    }
    busy = true;
    render();
    let res = null;
    try {
      res = await fetch("/api/v1/auth/login", {
        method: "POST",
        credentials: "same-origin",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ username: username, password: pass.value }),
      });
    } catch (_) {
      res = null;
    }
    busy = false;
    if (!res) {
      show("login.err.network", "network");
      return;
    }
    let body = null;
    try {
      body = await res.json();
    } catch (_) {
      body = null;
    }
    if (res.ok) {
      auth.noteIssued(body && body.expires_in);
      body = null; // holds the tokens: dropped at once, the cookies are the session
      go();
      return;
    }
    const detail = body && typeof body.detail === "object" && body.detail ? body.detail : {};
    const code = detail.code || "";
    if (res.status === 401) {
      show("login.err.bad_credentials", code || "bad_credentials");
      pass.value = "";
      pass.focus();
    } else if (res.status === 429) {
      startWait(retryAfter(res, detail));
      waitFor = code === "locked" ? username.toLowerCase() : null; // rate_limited: this address, any account
      show(code === "locked" ? "login.err.locked" : code === "rate_limited" ? "login.err.rate_limited" : "login.err.wait", code || "rate_limited");
      pass.value = "";
    } else if (res.status === 403 && code === "disabled") {
      show("login.err.disabled", code);
      pass.value = "";
    } else {
      show("login.err.server", code || "server", res.status);
    }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault(); // never the browser's own submit: no password in a URL or a form post
    signIn();
  });
  // Another account than the locked one may sign in at once.
  user.addEventListener("input", () => {
    if (waitFor !== null && user.value.trim().toLowerCase() !== waitFor) {
      waitUntil = 0;
      waitFor = null;
      shown = null;
      render();
    }
  });
  // Typing again clears a "wrong password" message (not a wait: that one counts down).
  for (const input of [user, pass]) {
    input.addEventListener("input", () => {
      if (shown && secondsLeft() <= 0 && shown.code !== "disabled") {
        shown = null;
        render();
      }
    });
  }

  /** Already signed in, or the refresh cookie still valid: straight on to `next`. */
  async function quietly() {
    if ((await auth.refresh()) === true) go(); // else: not signed in, the form it is
  }

  I.applyStatic();
  document.getElementById("lang-toggle").addEventListener("click", () => I.setLang(I.lang === "vi" ? "en" : "vi"));
  I.onChange(render);
  render();
  user.focus();
  if (!reason) quietly();
})();
