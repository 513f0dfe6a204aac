/* The device layer of the operator map: one canvas, thousands of markers, clusters by area.
 *
 * A Leaflet Renderer subclass (it inherits panning, padding and the zoom animation transform),
 * drawing every device itself in a few batched paths: one path per (state, kind), so 5,000
 * markers cost a handful of fill() calls. Each state has its own colour AND shape (see IOC.STATES).
 * Below `clusterBelowZoom` devices are grouped by area: one disc per area with the count, coloured
 * and marked with the shape of the worst state inside, plus the number of devices in alert.
 *
 * Items: {id, lat, lon, kind, state, area, name}. Events: onDevice(id), onHover(item|null).
 */
(function () {
  "use strict";

  const IOC = window.IOC;
  const STATES = IOC.STATES;
  const ALERT_STATES = new Set(["critical", "major", "minor", "info", "pending"]);
  const KIND_ORDER = { traffic_sensor: 0, camera: 1, site: 2 };
  const FONT = 'system-ui, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif';

  const DeviceLayer = L.Renderer.extend({
    options: { padding: 0.3, clusterBelowZoom: 10, denseAbove: 1500, denseBelowZoom: 11.5 },

    initialize(options) {
      L.Renderer.prototype.initialize.call(this, options);
      this._items = [];
      this._areas = new Map();
      this._hits = [];
      this._selected = null;
      this._frame = null;
      this.drawCount = 0; // for tests and the benchmark
    },

    // -- Leaflet plumbing ----------------------------------------------------------------
    _initContainer() {
      this._container = document.createElement("canvas");
      this._container.className = "device-canvas";
      this._ctx = this._container.getContext("2d");
    },
    _destroyContainer() {
      L.Util.cancelAnimFrame(this._frame);
      L.DomUtil.remove(this._container);
      delete this._ctx;
      delete this._container;
    },
    _updatePaths() {},
    _update() {
      if (this._map._animatingZoom && this._bounds) return;
      L.Renderer.prototype._update.call(this);
      const b = this._bounds;
      const size = b.getSize();
      const m = window.devicePixelRatio || 1;
      L.DomUtil.setPosition(this._container, b.min);
      this._container.width = Math.round(m * size.x);
      this._container.height = Math.round(m * size.y);
      this._container.style.width = size.x + "px";
      this._container.style.height = size.y + "px";
      this._ctx.setTransform(m, 0, 0, m, -m * b.min.x, -m * b.min.y);
      this._draw();
    },
    onAdd(map) {
      L.Renderer.prototype.onAdd.call(this, map);
      map.on("click", this._onClick, this);
      map.on("mousemove", this._onMove, this);
      map.on("mouseout", this._onOut, this);
    },
    onRemove(map) {
      map.off("click", this._onClick, this);
      map.off("mousemove", this._onMove, this);
      map.off("mouseout", this._onOut, this);
      L.Renderer.prototype.onRemove.call(this, map);
    },

    // -- data ------------------------------------------------------------------------------
    setItems(items) {
      this._items = items;
      this.redraw();
    },
    setAreas(areas) {
      this._areas = areas;
      this.redraw();
    },
    select(id) {
      this._selected = id;
      this.redraw();
    },
    /** Cluster below `clusterBelowZoom`; a dense map (over `denseAbove` items) clusters until
     * `denseBelowZoom`, so a province of thousands stays readable and cheap to draw. */
    _clusterZoom() {
      return this._items.length > this.options.denseAbove ? this.options.denseBelowZoom : this.options.clusterBelowZoom;
    },
    clustered() {
      return this._map && this._map.getZoom() < this._clusterZoom();
    },
    redraw() {
      if (!this._map || this._frame) return;
      this._frame = L.Util.requestAnimFrame(() => {
        this._frame = null;
        if (this._map && this._ctx) this._draw();
      });
    },

    // -- drawing ---------------------------------------------------------------------------
    _point(item, zoom, origin) {
      if (item._z !== zoom) {
        item._p = this._map.project([item.lat, item.lon], zoom);
        item._z = zoom;
      }
      return { x: item._p.x - origin.x, y: item._p.y - origin.y };
    },

    _draw() {
      const ctx = this._ctx;
      const map = this._map;
      const b = this._bounds;
      ctx.save();
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, this._container.width, this._container.height);
      ctx.restore();
      this._hits = [];
      const zoom = map.getZoom();
      const origin = map.getPixelOrigin();
      if (zoom < this._clusterZoom()) this._drawClusters(ctx, zoom, origin, b);
      else this._drawDevices(ctx, zoom, origin, b);
      this.drawCount++;
    },

    _drawAreaLabels(ctx, zoom, origin, dy) {
      ctx.font = "600 13px " + FONT;
      ctx.textAlign = "center";
      ctx.textBaseline = "top";
      ctx.lineWidth = 4;
      ctx.strokeStyle = "rgba(5,8,14,0.9)";
      ctx.fillStyle = dy ? "#dbe7f7" : "rgba(200,225,255,0.55)";
      for (const a of this._areas.values()) {
        if (!a.parent_id || a._cx === undefined) continue;
        const p = this._point(a._label || (a._label = { lat: a.lat, lon: a.lon }), zoom, origin);
        const y = dy ? a._cy + dy : p.y + 12;
        const x = dy ? a._cx : p.x;
        ctx.strokeText(a._name, x, y);
        ctx.fillText(a._name, x, y);
      }
    },

    _drawDevices(ctx, zoom, origin, b) {
      const r0 = zoom < 11 ? 4.5 : zoom < 13 ? 6 : 7.5;
      const groups = new Map();
      const minX = b.min.x - 20, minY = b.min.y - 20, maxX = b.max.x + 20, maxY = b.max.y + 20;
      for (const a of this._areas.values()) {
        const p = this._point(a._label || (a._label = { lat: a.lat, lon: a.lon }), zoom, origin);
        a._cx = p.x;
        a._cy = p.y;
      }
      this._drawAreaLabels(ctx, zoom, origin, 0);
      let selected = null;
      for (const it of this._items) {
        const p = this._point(it, zoom, origin);
        if (p.x < minX || p.x > maxX || p.y < minY || p.y > maxY) continue;
        const key = it.state + "|" + it.kind;
        let g = groups.get(key);
        if (!g) groups.set(key, (g = { state: it.state, kind: it.kind, pts: [] }));
        g.pts.push(p);
        const r = r0 + (ALERT_STATES.has(it.state) ? 2 : 0) + (it.kind === "site" ? 1.5 : 0);
        this._hits.push({ x: p.x, y: p.y, r: r + 3, item: it });
        if (it.id === this._selected) selected = { p, r };
      }
      const ordered = Array.from(groups.values()).sort(
        (a, c) => IOC.STATE_RANK[c.state] - IOC.STATE_RANK[a.state] || KIND_ORDER[a.kind] - KIND_ORDER[c.kind],
      );
      // Halos under the serious ones, so a red triangle stands out among a thousand green dots.
      for (const g of ordered) {
        if (g.state !== "critical" && g.state !== "major") continue;
        const color = STATES[g.state].color;
        ctx.beginPath();
        for (const p of g.pts) {
          ctx.moveTo(p.x + r0 * 2.8, p.y);
          ctx.arc(p.x, p.y, r0 * 2.8, 0, Math.PI * 2);
        }
        ctx.globalAlpha = 0.16;
        ctx.fillStyle = color;
        ctx.fill();
        ctx.globalAlpha = 0.7;
        ctx.strokeStyle = color;
        ctx.lineWidth = 1.5;
        ctx.stroke();
        ctx.globalAlpha = 1;
      }
      for (const g of ordered) this._drawGroup(ctx, g, r0 + (ALERT_STATES.has(g.state) ? 2 : 0) + (g.kind === "site" ? 1.5 : 0));
      if (selected) {
        ctx.beginPath();
        ctx.arc(selected.p.x, selected.p.y, selected.r + 7, 0, Math.PI * 2);
        ctx.strokeStyle = "#4fc3f7";
        ctx.lineWidth = 3;
        ctx.stroke();
      }
    },

    _drawGroup(ctx, g, r) {
      const s = STATES[g.state] || STATES.unknown;
      const hollow = IOC.isHollow(s.shape);
      const light = g.kind !== "traffic_sensor";
      ctx.beginPath();
      for (const p of g.pts) IOC.tracePath(ctx, s.shape, p.x, p.y, r);
      if (hollow) {
        ctx.fillStyle = "rgba(10,15,24,0.85)";
        ctx.fill();
        ctx.strokeStyle = s.color;
        ctx.lineWidth = 2.4;
        ctx.stroke();
      } else {
        ctx.fillStyle = s.color;
        ctx.fill();
        ctx.strokeStyle = light ? "#eaf2ff" : "#0b111c";
        ctx.lineWidth = light ? 1.6 : 1;
        ctx.stroke();
      }
      if (light && hollow) {
        // cameras and sites keep their light outline in every state
        ctx.beginPath();
        for (const p of g.pts) IOC.tracePath(ctx, s.shape, p.x, p.y, r + 2.2);
        ctx.strokeStyle = "rgba(234,242,255,0.75)";
        ctx.lineWidth = 1;
        ctx.stroke();
      }
      if (g.kind === "site") {
        ctx.beginPath();
        for (const p of g.pts) {
          ctx.moveTo(p.x + r + 4, p.y);
          ctx.arc(p.x, p.y, r + 4, 0, Math.PI * 2);
        }
        ctx.setLineDash([3, 3]);
        ctx.strokeStyle = "#eaf2ff";
        ctx.lineWidth = 1.2;
        ctx.stroke();
        ctx.setLineDash([]);
      }
      // Glyphs inside the shape once it is big enough: "!" in alerts, "×" on offline squares.
      if (s.shape === "square-x" || (s.shape === "triangle" && r >= 5.5)) {
        ctx.beginPath();
        for (const p of g.pts) {
          if (s.shape === "square-x") {
            const d = r * 0.5;
            ctx.moveTo(p.x - d, p.y - d);
            ctx.lineTo(p.x + d, p.y + d);
            ctx.moveTo(p.x + d, p.y - d);
            ctx.lineTo(p.x - d, p.y + d);
          } else {
            ctx.moveTo(p.x, p.y - r * 0.6);
            ctx.lineTo(p.x, p.y + r * 0.15);
            ctx.moveTo(p.x, p.y + r * 0.38);
            ctx.lineTo(p.x, p.y + r * 0.55);
          }
        }
        ctx.strokeStyle = "#0b111c";
        ctx.lineWidth = Math.max(1.4, r * 0.28);
        ctx.stroke();
      }
    },

    _drawClusters(ctx, zoom, origin, b) {
      const clusters = new Map();
      for (const it of this._items) {
        let c = clusters.get(it.area);
        if (!c) clusters.set(it.area, (c = { key: it.area, n: 0, alerts: 0, worst: "ok", sx: 0, sy: 0, items: [] }));
        const p = this._point(it, zoom, origin);
        c.n++;
        c.sx += p.x;
        c.sy += p.y;
        c.items.push(it);
        if (ALERT_STATES.has(it.state) && it.state !== "pending") c.alerts++;
        if (IOC.STATE_RANK[it.state] < IOC.STATE_RANK[c.worst]) c.worst = it.state;
      }
      for (const a of this._areas.values()) a._cx = undefined;
      const list = Array.from(clusters.values()).sort((a, c) => IOC.STATE_RANK[c.worst] - IOC.STATE_RANK[a.worst]);
      for (const c of list) {
        const area = this._areas.get(c.key);
        const p = area ? this._point(area._label || (area._label = { lat: area.lat, lon: area.lon }), zoom, origin) : { x: c.sx / c.n, y: c.sy / c.n };
        const r = Math.min(34, 15 + Math.sqrt(c.n) * 1.3);
        const s = STATES[c.worst];
        if (area) {
          area._cx = p.x;
          area._cy = p.y + r + 6;
        }
        if (c.worst === "critical" || c.worst === "major") {
          ctx.beginPath();
          ctx.arc(p.x, p.y, r + 8, 0, Math.PI * 2);
          ctx.globalAlpha = 0.2;
          ctx.fillStyle = s.color;
          ctx.fill();
          ctx.globalAlpha = 1;
        }
        ctx.beginPath();
        ctx.arc(p.x, p.y, r, 0, Math.PI * 2);
        ctx.fillStyle = "rgba(16,24,39,0.94)";
        ctx.fill();
        ctx.lineWidth = 4;
        ctx.strokeStyle = s.color;
        ctx.stroke();
        ctx.fillStyle = "#f2f6fc";
        ctx.font = "700 " + (r > 24 ? 17 : 15) + "px " + FONT;
        ctx.textAlign = "center";
        ctx.textBaseline = "middle";
        ctx.fillText(String(c.n), p.x, p.y + 1);
        // The worst state's own shape on the rim, and how many devices are in alert.
        const gx = p.x + r * 0.78, gy = p.y - r * 0.78;
        const gr = 7.5;
        ctx.beginPath();
        ctx.arc(gx, gy, gr + 4, 0, Math.PI * 2);
        ctx.fillStyle = "#0b111c";
        ctx.fill();
        this._drawGroup(ctx, { state: c.worst, kind: "traffic_sensor", pts: [{ x: gx, y: gy }] }, gr);
        if (c.alerts) {
          const label = String(c.alerts);
          ctx.font = "800 13px " + FONT;
          const w = Math.max(20, ctx.measureText(label).width + 10);
          const bx = p.x - r * 0.78 - w / 2, by = p.y - r * 0.78 - 10;
          ctx.beginPath();
          ctx.roundRect ? ctx.roundRect(bx, by, w, 20, 10) : ctx.rect(bx, by, w, 20);
          ctx.fillStyle = s.color;
          ctx.fill();
          ctx.strokeStyle = "#0b111c";
          ctx.lineWidth = 1.5;
          ctx.stroke();
          ctx.fillStyle = "#0b111c";
          ctx.fillText(label, bx + w / 2, by + 10.5);
        }
        this._hits.push({ x: p.x, y: p.y, r: r + 4, cluster: c });
      }
      this._drawAreaLabels(ctx, zoom, origin, 1);
    },

    // -- interaction ----------------------------------------------------------------------
    _hitAt(containerPoint) {
      const lp = this._map.containerPointToLayerPoint(containerPoint); // hits are in layer px
      const x = lp.x;
      let best = null;
      let bestD = Infinity;
      for (let i = this._hits.length - 1; i >= 0; i--) {
        const hit = this._hits[i];
        const d = Math.hypot(hit.x - x, hit.y - lp.y);
        if (d <= hit.r && d < bestD) {
          best = hit;
          bestD = d;
          if (hit.cluster) break;
        }
      }
      return best;
    },
    _onClick(ev) {
      const hit = this._hitAt(ev.containerPoint);
      if (!hit) return;
      if (hit.cluster) {
        const bounds = L.latLngBounds(hit.cluster.items.map((it) => [it.lat, it.lon]));
        const target = Math.max(this._clusterZoom() + 0.25, Math.min(13, this._map.getBoundsZoom(bounds.pad(0.2))));
        this._map.flyTo(bounds.getCenter(), target, { duration: 0.5 });
      } else if (this.options.onDevice) {
        this.options.onDevice(hit.item.id);
      }
    },
    _onMove(ev) {
      const hit = this._hitAt(ev.containerPoint);
      this._map.getContainer().style.cursor = hit ? "pointer" : "";
      if (this.options.onHover) this.options.onHover(hit, ev.containerPoint);
    },
    _onOut() {
      this._map.getContainer().style.cursor = "";
      if (this.options.onHover) this.options.onHover(null);
    },
  });

  IOC.DeviceLayer = DeviceLayer;
})();
