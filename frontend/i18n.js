/* IOC operator UI strings. Vietnamese first; English on the toggle (remembered in localStorage).
 *
 * Usage: I18N.t("key", {n: 3}) ; elements with data-i18n="key" get their text replaced,
 * data-i18n-title="key" their title attribute. I18N.onChange(fn) re-renders dynamic parts.
 */
(function () {
  "use strict";

  const STRINGS = {
    vi: {
      "app.title": "Trung tâm Giám sát, Điều hành thông minh (IOC)",
      "app.subtitle": "Tỉnh Bình Phước · Bản đồ điều hành",
      "lang.toggle": "English",
      "lang.toggle.title": "Switch to English",
      "conn.live": "Trực tiếp",
      "conn.connecting": "Đang kết nối…",
      "conn.reconnecting": "Đang kết nối lại…",
      "conn.ago": "cập nhật {n} giây trước",
      "conn.never": "chưa có dữ liệu",
      "conn.resync": "Đang đồng bộ lại…",
      "counts.devices": "Thiết bị",
      "counts.ok": "Bình thường",
      "counts.alert": "Cảnh báo",
      "counts.nodata": "Mất dữ liệu",
      "counts.open": "Cảnh báo mở",
      "counts.firing": "kích hoạt",
      "feed.title": "Cảnh báo trực tiếp",
      "feed.empty": "Không có cảnh báo đang mở",
      "feed.ack": "Xác nhận",
      "feed.acking": "Đang gửi…",
      "feed.ack.failed": "Xác nhận thất bại: {msg}",
      "feed.ack.auth": "Cần đăng nhập để xác nhận",
      "feed.value": "giá trị",
      "feed.since": "từ",
      "feed.ackedBy": "đã xác nhận",
      "sev.critical": "Nghiêm trọng",
      "sev.major": "Cao",
      "sev.minor": "Thấp",
      "sev.info": "Thông tin",
      "status.pending": "Chờ xác định",
      "status.firing": "Đang cảnh báo",
      "status.acknowledged": "Đã xác nhận",
      "status.resolved": "Đã xử lý",
      "kind.traffic_sensor": "Cảm biến giao thông",
      "kind.camera": "Camera",
      "state.ok": "Bình thường",
      "state.alert": "Đang cảnh báo",
      "state.pending": "Chờ xác định",
      "state.unknown": "Không có dữ liệu",
      "dev.area": "Khu vực",
      "dev.kind": "Loại",
      "dev.state": "Trạng thái",
      "dev.speed": "Tốc độ",
      "dev.intensity": "Lưu lượng",
      "dev.occupancy": "Chiếm dụng",
      "dev.lastSeen": "Cập nhật lúc",
      "dev.never": "chưa nhận dữ liệu",
      "dev.alerts": "Cảnh báo mở",
      "unit.kmh": "km/h",
      "unit.vph": "xe/giờ",
      "legend.title": "Chú giải",
      "legend.ok": "Bình thường",
      "legend.pending": "Chờ xác định",
      "legend.alert": "Có cảnh báo",
      "legend.nodata": "Không có dữ liệu",
      "legend.camera": "Camera (viền sáng)",
      "map.error": "Không tải được bản đồ: {msg}",
      "devices.error": "Không tải được danh sách thiết bị",
      "tz": "Giờ Việt Nam (GMT+7)",
    },
    en: {
      "app.title": "Intelligent Operations Centre",
      "app.subtitle": "Binh Phuoc province · Operations map",
      "lang.toggle": "Tiếng Việt",
      "lang.toggle.title": "Chuyển sang tiếng Việt",
      "conn.live": "Live",
      "conn.connecting": "Connecting…",
      "conn.reconnecting": "Reconnecting…",
      "conn.ago": "last update {n} s ago",
      "conn.never": "no data yet",
      "conn.resync": "Resynchronising…",
      "counts.devices": "Devices",
      "counts.ok": "OK",
      "counts.alert": "Alert",
      "counts.nodata": "No data",
      "counts.open": "Open alerts",
      "counts.firing": "firing",
      "feed.title": "Live alerts",
      "feed.empty": "No open alerts",
      "feed.ack": "Acknowledge",
      "feed.acking": "Sending…",
      "feed.ack.failed": "Acknowledge failed: {msg}",
      "feed.ack.auth": "Login required to acknowledge",
      "feed.value": "value",
      "feed.since": "since",
      "feed.ackedBy": "acknowledged",
      "sev.critical": "Critical",
      "sev.major": "Major",
      "sev.minor": "Minor",
      "sev.info": "Info",
      "status.pending": "Pending",
      "status.firing": "Firing",
      "status.acknowledged": "Acknowledged",
      "status.resolved": "Resolved",
      "kind.traffic_sensor": "Traffic sensor",
      "kind.camera": "Camera",
      "state.ok": "OK",
      "state.alert": "Alert",
      "state.pending": "Pending",
      "state.unknown": "No data",
      "dev.area": "Area",
      "dev.kind": "Kind",
      "dev.state": "State",
      "dev.speed": "Speed",
      "dev.intensity": "Flow",
      "dev.occupancy": "Occupancy",
      "dev.lastSeen": "Last seen",
      "dev.never": "never",
      "dev.alerts": "Open alerts",
      "unit.kmh": "km/h",
      "unit.vph": "veh/h",
      "legend.title": "Legend",
      "legend.ok": "OK",
      "legend.pending": "Pending",
      "legend.alert": "Open alert",
      "legend.nodata": "No data",
      "legend.camera": "Camera (light ring)",
      "map.error": "Could not load the map: {msg}",
      "devices.error": "Could not load devices",
      "tz": "Vietnam time (GMT+7)",
    },
  };

  const STORAGE_KEY = "ioc.lang";
  const listeners = [];

  function initialLang() {
    try {
      const saved = window.localStorage.getItem(STORAGE_KEY);
      if (saved === "vi" || saved === "en") return saved;
    } catch (_) {
      /* storage disabled: fall through to Vietnamese */
    }
    return "vi";
  }

  let lang = initialLang();

  function t(key, vars) {
    const table = STRINGS[lang] || STRINGS.vi;
    let s = key in table ? table[key] : key in STRINGS.vi ? STRINGS.vi[key] : key;
    if (vars) {
      for (const [k, v] of Object.entries(vars)) s = s.split("{" + k + "}").join(String(v));
    }
    return s;
  }

  function applyStatic(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach((el) => {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    (root || document).querySelectorAll("[data-i18n-title]").forEach((el) => {
      el.title = t(el.getAttribute("data-i18n-title"));
    });
    document.documentElement.lang = lang;
    document.title = t("app.title");
  }

  function setLang(next) {
    if (next !== "vi" && next !== "en") return;
    lang = next;
    try {
      window.localStorage.setItem(STORAGE_KEY, lang);
    } catch (_) {
      /* not persisted; still switched for this page */
    }
    applyStatic();
    listeners.forEach((fn) => fn(lang));
  }

  // Times are stored and sent in UTC; the UI always shows Asia/Ho_Chi_Minh.
  const TZ = "Asia/Ho_Chi_Minh";
  const fmtCache = {};
  function formatter(kind) {
    const key = lang + ":" + kind;
    if (!fmtCache[key]) {
      const locale = lang === "vi" ? "vi-VN" : "en-GB";
      const opts =
        kind === "time"
          ? { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
          : {
              timeZone: TZ,
              day: "2-digit",
              month: "2-digit",
              hour: "2-digit",
              minute: "2-digit",
              second: "2-digit",
              hour12: false,
            };
      fmtCache[key] = new Intl.DateTimeFormat(locale, opts);
    }
    return fmtCache[key];
  }
  const dayFmt = new Intl.DateTimeFormat("en-CA", { timeZone: TZ });

  /** Local (Vietnam) time of an ISO-8601 instant; adds the date when it is not today. */
  function formatTime(iso) {
    if (!iso) return "";
    const d = iso instanceof Date ? iso : new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    const today = dayFmt.format(new Date()) === dayFmt.format(d);
    return formatter(today ? "time" : "datetime").format(d);
  }

  window.I18N = {
    t,
    setLang,
    applyStatic,
    formatTime,
    TZ,
    get lang() {
      return lang;
    },
    onChange(fn) {
      listeners.push(fn);
    },
  };
})();
