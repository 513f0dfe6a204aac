/* The live alert feed of the operator map: grouped by root cause, newest first, with the
 * operator's actions (acknowledge, assign, note, resolve, maintenance) — all through the API, and
 * only those the signed-in role may do (a leader sees none; maintenance is for supervisors).
 * The server's answer is applied at once; every other screen gets the same change as an event.
 *
 * DOM hooks kept for tests: #alert-feed .alert-item[data-alert-id][data-status], .ack-btn[data-alert-id].
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const I = window.I18N;
  const t = I.t;
  const h = IOC.h;
  const MAX_ROOTS = 150; // more than this is a job for the filters, not for scrolling
  const NEEDS_ACTION = { firing: 0, flapping: 0, pending: 1, acknowledged: 2, suppressed: 3, resolved: 4 };
  const DURATIONS = [30, 60, 120, 240, 480, 1440];

  function alertTime(a) {
    return a.fired_at || a.started_at || a.updated_at;
  }
  function title(a) {
    return IOC.pick(a, "title", "title_en") || a.rule_id || "";
  }
  function sevState(a) {
    if (a.status === "pending") return "pending";
    return IOC.SEV_RANK[a.severity] !== undefined ? a.severity : "info";
  }

  function AlertFeed(o) {
    const el = o.el;
    const items = new Map(); // root alert id -> {key, el}
    const expanded = new Set(); // roots whose dependants are shown
    const forms = new Map(); // alert id -> open form type
    const busy = new Set(); // alert ids with a request in flight
    const notes = new Map(); // alert id -> latest note seen live {note, actor, time}
    const flashUntil = new Map();
    let last = new Map();
    let queued = false;

    function deviceName(a) {
      const d = o.getDevice(a.device_id);
      return a.device_name || (d && d.name) || a.device_id || "";
    }

    async function act(a, kind, payload) {
      if (busy.has(a.id)) return;
      busy.add(a.id);
      render();
      try {
        let updated = null;
        if (kind === "ack") updated = await IOC.send("POST", "/alerts/" + a.id + "/ack", { note: payload || "" });
        else if (kind === "resolve") updated = await IOC.send("POST", "/alerts/" + a.id + "/resolve", { note: payload || null });
        else if (kind === "assign") updated = await IOC.send("POST", "/alerts/" + a.id + "/assign", { assignee: payload || null });
        else if (kind === "note") updated = await IOC.send("POST", "/alerts/" + a.id + "/notes", { note: payload });
        else if (kind === "maint") {
          await IOC.send("POST", "/maintenance", {
            device_id: a.device_id,
            ends_at: new Date(Date.now() + payload.minutes * 60e3).toISOString(),
            reason: payload.reason,
          });
          if (o.onMaintenance) o.onMaintenance();
        }
        if (kind === "note" && updated) notes.set(a.id, { note: payload, actor: "", time: new Date().toISOString() });
        forms.delete(a.id);
        if (updated && updated.id !== undefined) o.onUpdated(updated);
      } catch (err) {
        o.toast(t("act.failed", { msg: err.message }));
      } finally {
        busy.delete(a.id);
        render();
      }
    }

    function actionButton(a, kind, label) {
      return h(
        "button",
        {
          type: "button",
          class: "act-btn",
          dataset: { action: kind, alertId: a.id },
          "aria-expanded": forms.get(a.id) === kind ? "true" : "false",
          onclick: () => {
            const opening = forms.get(a.id) !== kind;
            opening ? forms.set(a.id, kind) : forms.delete(a.id);
            render(true);
            const f = opening && el.querySelector('.alert-item[data-alert-id="' + a.id + '"] .ai-form');
            if (f) f.querySelector("input, textarea").focus();
          },
        },
        label,
      );
    }

    function form(a, kind) {
      const input =
        kind === "note"
          ? h("textarea", { name: "text", rows: "2", required: true, maxlength: "2000", "aria-label": t("act.note.label") })
          : h("input", {
              name: "text",
              type: "text",
              maxlength: kind === "assign" ? "100" : "500",
              required: kind === "maint" ? true : null,
              value: kind === "assign" ? a.assignee || "" : null,
              "aria-label": t("act." + kind + ".label"),
              placeholder: t("act." + kind + ".placeholder"),
            });
      const duration =
        kind === "maint"
          ? h(
              "select",
              { name: "minutes", "aria-label": t("act.maint.duration") },
              DURATIONS.map((m) => h("option", { value: m, selected: m === 120 ? true : null }, t("dur." + m))),
            )
          : null;
      const f = h(
        "form",
        {
          class: "ai-form",
          dataset: { form: kind },
          onsubmit: (ev) => {
            ev.preventDefault();
            const text = input.value.trim();
            if (kind === "maint") act(a, "maint", { minutes: Number(duration.value), reason: text });
            else act(a, kind, text);
          },
          onkeydown: (ev) => {
            if (ev.key === "Escape") {
              forms.delete(a.id);
              render(true);
              const item = el.querySelector('.alert-item[data-alert-id="' + a.id + '"]');
              if (item) item.focus();
            }
          },
        },
        h("label", { class: "ai-form-label" }, t("act." + kind + ".label")),
        duration,
        input,
        h(
          "div",
          { class: "ai-form-buttons" },
          h("button", { type: "submit", class: "ack-like" }, t("act." + kind + ".submit")),
          h("button", { type: "button", class: "act-btn", onclick: () => (forms.delete(a.id), render(true)) }, t("act.cancel")),
        ),
      );
      return f;
    }

    function info(a) {
      const lines = [];
      if (a.suppressed_by === "maintenance") lines.push(h("div", { class: "ai-info" }, t("feed.suppressed.maint")));
      else if (a.suppressed_by && a.suppressed_by.startsWith("alert:"))
        lines.push(h("div", { class: "ai-info" }, t("feed.suppressed.parent", { id: a.suppressed_by.slice(6) })));
      if (a.assignee) lines.push(h("div", { class: "ai-info ai-assignee" }, t("feed.assignee") + ": " + a.assignee));
      if (a.status === "acknowledged" && (a.acknowledged_by || a.ack_note)) {
        lines.push(
          h(
            "div",
            { class: "ai-info ai-ack" },
            "✓ " + t("feed.ackedBy") + (a.acknowledged_by ? " · " + a.acknowledged_by : "") + (a.ack_note ? " — " + a.ack_note : ""),
          ),
        );
      }
      const n = notes.get(a.id);
      if (n) lines.push(h("div", { class: "ai-info ai-note" }, t("feed.note") + ": " + n.note));
      if (a.status === "resolved" && a.resolve_note) lines.push(h("div", { class: "ai-info" }, "✓ " + a.resolve_note));
      return lines;
    }

    /** What this role may do with an alert (the server checks again; this only hides buttons). */
    function allowed(kind) {
      return IOC.can(kind === "maint" ? "maintenance" : "alert." + kind);
    }

    function actions(a, dev, isBusy) {
      const buttons = [
        (a.status === "firing" || a.status === "flapping") && allowed("ack")
          ? h(
              "button",
              { type: "button", class: "ack-btn", disabled: isBusy, dataset: { alertId: a.id }, onclick: () => act(a, "ack", "") },
              isBusy ? t("feed.acking") : t("feed.ack"),
            )
          : null,
        allowed("assign") ? actionButton(a, "assign", t("act.assign")) : null,
        allowed("note") ? actionButton(a, "note", t("act.note")) : null,
        allowed("resolve") ? actionButton(a, "resolve", t("act.resolve")) : null,
        dev && dev.kind !== "site" && allowed("maint") ? actionButton(a, "maint", t("act.maint")) : null,
      ].filter(Boolean);
      return buttons.length ? h("div", { class: "ai-actions" }, buttons) : null;
    }

    function item(a, children, child) {
      const st = sevState(a);
      const classes = ["alert-item", "sev-" + a.severity, "status-" + a.status];
      if (child) classes.push("child");
      if ((flashUntil.get(a.id) || 0) > Date.now()) classes.push("flash");
      const dev = o.getDevice(a.device_id);
      const area = a.area_id || (dev && dev.area_id);
      const open = a.status !== "resolved";
      const isBusy = busy.has(a.id);
      const kindOpen = forms.get(a.id);
      return h(
        "li",
        {
          class: classes.join(" "),
          dataset: { alertId: a.id, status: a.status, severity: a.severity, deviceId: a.device_id || "" },
          tabindex: "0",
          "aria-label": t("sev." + a.severity) + " · " + t("status." + a.status) + " · " + title(a) + " · " + deviceName(a),
          onclick: (ev) => {
            if (ev.target.closest("button, form, summary, a")) return;
            ev.stopPropagation();
            o.onFocus(a.device_id);
          },
          onkeydown: (ev) => {
            if (ev.key === "Enter" && ev.target === ev.currentTarget) o.onFocus(a.device_id);
          },
        },
        h(
          "div",
          { class: "ai-head" },
          h("span", { class: "sev-badge" }, IOC.shapeIcon(st, 13), " ", t("sev." + a.severity)),
          h("span", { class: "ai-status" }, t("status." + a.status)),
          a.escalated ? h("span", { class: "ai-chip", title: t("feed.escalated") }, "⬆ " + t("feed.escalated")) : null,
          h("time", { class: "ai-time", datetime: alertTime(a) || "" }, I.formatTime(alertTime(a))),
        ),
        h("div", { class: "ai-title" }, title(a)),
        h(
          "div",
          { class: "ai-meta" },
          h("span", { class: "ai-device" }, deviceName(a)),
          area ? h("span", { class: "ai-area" }, o.areaName(area)) : null,
          a.value !== null && a.value !== undefined ? h("span", { class: "ai-value" }, t("feed.value") + " " + IOC.fmtNum(a.value, 2)) : null,
        ),
        info(a),
        open ? actions(a, dev, isBusy) : null,
        kindOpen && open && allowed(kindOpen) ? form(a, kindOpen) : null,
        children && children.length
          ? h(
              "details",
              {
                class: "ai-children",
                open: expanded.has(a.id) ? true : null,
                ontoggle: (ev) => (ev.target.open ? expanded.add(a.id) : expanded.delete(a.id)),
              },
              h("summary", null, t("feed.children", { n: children.length })),
              h("ul", null, children.map((c) => item(c, null, true))),
            )
          : null,
      );
    }

    function key(a, children) {
      return JSON.stringify([
        I.lang,
        IOC.auth.role,
        a.status,
        a.severity,
        a.updated_at,
        a.assignee,
        a.escalated,
        deviceName(a),
        !!o.getDevice(a.device_id),
        o.areaName(a.area_id),
        busy.has(a.id),
        forms.get(a.id) || "",
        (flashUntil.get(a.id) || 0) > Date.now(),
        notes.has(a.id) ? notes.get(a.id).note : "",
        expanded.has(a.id),
        (children || []).map((c) => [c.id, c.status, c.updated_at, forms.get(c.id) || "", busy.has(c.id)]),
      ]);
    }

    function sortKey(a, b) {
      const s = (NEEDS_ACTION[a.status] ?? 5) - (NEEDS_ACTION[b.status] ?? 5);
      if (s) return s;
      return String(alertTime(b) || "").localeCompare(String(alertTime(a) || ""));
    }

    function draw(force) {
      const all = Array.from(last.values());
      const children = new Map();
      const roots = [];
      for (const a of all) {
        if (a.parent_alert_id && last.has(a.parent_alert_id)) {
          if (!children.has(a.parent_alert_id)) children.set(a.parent_alert_id, []);
          children.get(a.parent_alert_id).push(a);
        } else roots.push(a);
      }
      const shown = roots
        .filter((a) => o.filter(a) || (children.get(a.id) || []).some(o.filter))
        .sort(sortKey);
      const visible = shown.slice(0, MAX_ROOTS);
      const keep = new Set();
      let prev = null;
      for (const a of visible) {
        const kids = (children.get(a.id) || []).sort(sortKey);
        const k = key(a, kids);
        let entry = items.get(a.id);
        const typing = entry && entry.el.contains(document.activeElement) && document.activeElement.matches("input, textarea, select");
        if (!entry || (entry.key !== k && (force || !typing))) {
          const node = item(a, kids, false);
          if (entry) entry.el.replaceWith(node);
          entry = { key: k, el: node };
          items.set(a.id, entry);
        }
        keep.add(a.id);
        const want = prev ? prev.nextSibling : el.firstChild;
        if (want !== entry.el) el.insertBefore(entry.el, want);
        prev = entry.el;
      }
      for (const [id, entry] of Array.from(items.entries())) {
        if (!keep.has(id)) {
          entry.el.remove();
          items.delete(id);
        }
      }
      for (const id of Array.from(notes.keys())) if (!last.has(id)) notes.delete(id);
      for (const id of Array.from(forms.keys())) if (!last.has(id)) forms.delete(id);
      o.emptyEl.hidden = shown.length > 0;
      o.moreEl.hidden = shown.length <= MAX_ROOTS;
      o.moreEl.textContent = t("feed.more", { n: shown.length - MAX_ROOTS });
    }

    function render(force) {
      if (force) {
        draw(true);
        return;
      }
      if (queued) return;
      queued = true;
      requestAnimationFrame(() => {
        queued = false;
        draw(false);
      });
    }

    return {
      update(alerts) {
        last = alerts;
        render();
      },
      render,
      flash(id, ms) {
        flashUntil.set(id, Date.now() + ms);
        setTimeout(() => {
          flashUntil.delete(id);
          render();
        }, ms);
      },
      note(id, note) {
        notes.set(id, note);
        render();
      },
    };
  }

  IOC.AlertFeed = AlertFeed;
})();
