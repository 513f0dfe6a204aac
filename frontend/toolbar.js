/* The operator map's toolbar: filters by kind, area and severity, and search by name or id
 * (accents ignored; arrows, Enter, Escape; "/" focuses it from anywhere on the page).
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

  IOC.Toolbar = Toolbar;
})();
