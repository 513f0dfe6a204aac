/* The screens' bars: the operator map's toolbar (filters by kind, area and severity, and search
 * by name or id — accents ignored; arrows, Enter, Escape; "/" focuses it from anywhere on the
 * page), and the user menu every screen has (who is signed in, their role and area, sign out).
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const t = window.I18N.t;
  const h = IOC.h;

  function Toolbar(o) {
    const state = o.state;
    const map = o.map;
    const areaName = o.areaName;
    const ancestors = o.ancestors;
    const subtree = o.subtree;
    const redraw = o.redraw;

    const areaSel = document.getElementById("filter-area");
    const sevSel = document.getElementById("filter-severity");
    function fillAreaFilter() {
      const keep = areaSel.value;
      const depth = (a) => ancestors(a.id).size - 1;
      const sorted = Array.from(state.areas.values()).sort((a, b) => depth(a) - depth(b) || areaName(a.id).localeCompare(areaName(b.id), "vi"));
      const ordered = [];
      const walk = (parent) => {
        for (const a of sorted) if ((a.parent_id || null) === parent) ordered.push(a), walk(a.id);
      };
      walk(null);
      IOC.put(areaSel,
        h("option", { value: "" }, t("filter.area.all")),
        ...ordered.filter((a) => a.parent_id).map((a) => h("option", { value: a.id }, "\u00a0".repeat(2 * (depth(a) - 1)) + areaName(a.id))),
      );
      areaSel.value = keep;
    }
    function fillSeverityFilter() {
      const keep = sevSel.value || "all";
      IOC.put(sevSel, ...["all", "critical", "major", "minor", "info"].map((s) => h("option", { value: s }, t("filter.sev." + s))));
      sevSel.value = keep;
    }
    areaSel.addEventListener("change", () => {
      state.filters.area = areaSel.value;
      redraw();
      const pts = [...state.devices.values()].filter((d) => !areaSel.value || subtree(areaSel.value).has(d.area_id)).map((d) => [d.lat, d.lon]);
      if (areaSel.value && pts.length) map.flyToBounds(L.latLngBounds(pts).pad(0.15), { duration: 0.5, maxZoom: 13 });
    });
    sevSel.addEventListener("change", () => {
      state.filters.severity = sevSel.value;
      redraw();
    });
    document.querySelectorAll(".kind-toggle").forEach((btn) => {
      btn.addEventListener("click", () => {
        const k = btn.dataset.kind;
        state.filters.kinds.has(k) ? state.filters.kinds.delete(k) : state.filters.kinds.add(k);
        btn.setAttribute("aria-pressed", state.filters.kinds.has(k) ? "true" : "false");
        redraw();
      });
    });
    document.getElementById("filter-reset").addEventListener("click", () => {
      state.filters = { kinds: new Set(["traffic_sensor", "camera", "site"]), area: "", severity: "all" };
      areaSel.value = "";
      sevSel.value = "all";
      document.querySelectorAll(".kind-toggle").forEach((b) => b.setAttribute("aria-pressed", "true"));
      redraw();
    });

    const search = document.getElementById("search");
    const results = document.getElementById("search-results");
    let matches = [];
    let active = -1;
    const fold = (s) => String(s || "").normalize("NFD").replace(/[\u0300-\u036f]/g, "").replace(/đ/g, "d").replace(/Đ/g, "D").toLowerCase();
    function renderResults() {
      IOC.put(results,
        ...matches.map((d, i) =>
          h(
            "li",
            {
              id: "sr-" + i,
              role: "option",
              class: i === active ? "active" : null,
              "aria-selected": i === active ? "true" : "false",
              onmousedown: (ev) => {
                ev.preventDefault();
                choose(i);
              },
            },
            IOC.shapeIcon(d._state || "unknown", 13),
            h("span", { class: "sr-name" }, d.name),
            h("span", { class: "sr-meta" }, d.id + " · " + areaName(d.area_id)),
          ),
        ),
      );
      results.hidden = !matches.length;
      search.setAttribute("aria-expanded", matches.length ? "true" : "false");
      if (active >= 0) search.setAttribute("aria-activedescendant", "sr-" + active);
      else search.removeAttribute("aria-activedescendant");
    }
    function choose(i) {
      const d = matches[i];
      if (!d) return;
      matches = [];
      active = -1;
      renderResults();
      search.value = d.name;
      o.focusDevice(d.id);
    }
    search.addEventListener("input", () => {
      const q = fold(search.value.trim());
      matches = [];
      active = -1;
      if (q) {
        for (const d of o.devices()) {
          if (fold(d.name).includes(q) || fold(d.id).includes(q)) matches.push(d);
          if (matches.length >= 8) break;
        }
        active = matches.length ? 0 : -1;
      }
      renderResults();
    });
    search.addEventListener("keydown", (ev) => {
      if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        ev.preventDefault();
        if (!matches.length) return;
        active = (active + (ev.key === "ArrowDown" ? 1 : matches.length - 1)) % matches.length;
        renderResults();
      } else if (ev.key === "Enter") {
        ev.preventDefault();
        choose(Math.max(0, active));
      } else if (ev.key === "Escape") {
        search.value = "";
        matches = [];
        renderResults();
      }
    });
    search.addEventListener("blur", () => setTimeout(() => ((matches = []), renderResults()), 150));
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "/" && !ev.target.closest("input, textarea, select")) {
        ev.preventDefault();
        search.focus();
      }
    });

    return { fillAreaFilter, fillSeverityFilter };
  }

  // ---- user menu (every screen) -------------------------------------------------------------------
  const ROLES = ["admin", "supervisor", "operator", "leader"];
  function roleName(role) {
    return ROLES.includes(role) ? t("role." + role) : String(role || "");
  }
  function initial(name) {
    // Vietnamese names end with the given name: "Nguyễn Văn An" -> "A".
    const words = String(name || "").trim().split(/\s+/);
    return (words[words.length - 1] || "?").charAt(0).toLocaleUpperCase("vi");
  }

  /** The signed-in user's menu in `root` (an empty element): name and role on its button; the
   * panel it opens has the username, role, area and "Sign out". */
  function UserMenu(root) {
    const auth = IOC.auth;
    const panelId = (root.id || "user-menu") + "-panel";
    let failed = false;
    let busy = false;
    const button = h("button", {
      type: "button",
      class: "um-button",
      "aria-haspopup": "true",
      "aria-expanded": "false",
      "aria-controls": panelId,
      onclick: () => toggle(),
    });
    const panel = h("div", { id: panelId, class: "um-panel", hidden: true });
    root.classList.add("user-menu");
    root.hidden = true;
    IOC.put(root, button, panel);

    function toggle(open) {
      const want = open === undefined ? panel.hidden : open;
      panel.hidden = !want;
      button.setAttribute("aria-expanded", want ? "true" : "false");
      if (want) {
        failed = false;
        render();
        const out = panel.querySelector(".um-signout");
        if (out) out.focus();
      }
    }

    async function signOut() {
      if (busy) return;
      busy = true;
      render();
      const ok = await auth.signOut();
      busy = false;
      failed = !ok;
      render();
    }

    function render() {
      const u = auth.user;
      if (!u) {
        root.hidden = true;
        return;
      }
      root.hidden = false;
      root.dataset.role = u.role;
      const name = u.display_name || u.username;
      const role = roleName(u.role);
      IOC.put(button,
        h("span", { class: "um-avatar", "aria-hidden": "true" }, initial(name)),
        h("span", { class: "um-who" }, h("span", { class: "um-name" }, name), h("span", { class: "um-role" }, role)),
      );
      button.setAttribute("aria-label", t("user.menu") + ": " + name + " · " + role);
      button.title = t("user.menu") + ": " + name + " · " + role;
      IOC.put(panel,
        h("div", { class: "um-title" }, name),
        h(
          "dl",
          { class: "um-facts" },
          h("dt", null, t("user.username")),
          h("dd", { class: "um-username" }, u.username),
          h("dt", null, t("user.role")),
          h("dd", { class: "um-rolename" }, role),
          h("dt", null, t("user.area")),
          h("dd", { class: "um-area" }, u.area_name || t("user.allAreas")),
        ),
        failed ? h("p", { class: "um-error", role: "alert" }, t("user.signOutFailed")) : null,
        h("button", { type: "button", class: "um-signout", disabled: busy, onclick: signOut }, t("user.signOut")),
      );
    }

    root.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && !panel.hidden) {
        ev.stopPropagation();
        toggle(false);
        button.focus();
      }
    });
    document.addEventListener("pointerdown", (ev) => {
      if (!panel.hidden && !root.contains(ev.target)) toggle(false);
    });
    auth.onChange(render);
    window.I18N.onChange(render);
    render();
    return { render, toggle };
  }

  IOC.Toolbar = Toolbar;
  IOC.UserMenu = UserMenu;
})();
