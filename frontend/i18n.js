/* IOC UI strings for the three screens. Vietnamese first; English on the toggle (remembered in
 * localStorage) or with ?lang=en in the address (for a wall nobody touches).
 *
 * I18N.t("key", {n: 3}); elements with data-i18n="key" get their text, data-i18n-title their
 * title, data-i18n-placeholder their placeholder, data-i18n-aria their aria-label; <html
 * data-title-key> names the page title. A key with no string is shown raw and recorded in
 * I18N.missing (the browser tests check it stays empty in both languages).
 */
(function () {
  "use strict";

  const STRINGS = {
    vi: {
      "app.title": "Trung tâm Giám sát, Điều hành thông minh (IOC)",
      "app.subtitle": "Tỉnh Bình Phước · Bản đồ điều hành",
      "nav.label": "Màn hình",
      "nav.map": "Bản đồ",
      "nav.wall": "Màn hình camera",
      "nav.leader": "Tổng quan",
      "lang.toggle": "English",
      "lang.toggle.title": "Switch to English",
      "conn.live": "Trực tiếp",
      "conn.connecting": "Đang kết nối…",
      "conn.reconnecting": "Đang kết nối lại…",
      "conn.ago": "cập nhật {n} giây trước",
      "conn.resync": "Đang đồng bộ lại…",
      "ago.s": "{n} giây trước",
      "ago.m": "{n} phút trước",
      "ago.h": "{n} giờ trước",
      "err.auth": "Cần đăng nhập",
      "counts.devices": "Thiết bị",
      "counts.ok": "Bình thường",
      "counts.alert": "Cảnh báo",
      "counts.problem": "Sự cố",
      "counts.nodata": "Mất dữ liệu",
      "counts.open": "Cảnh báo mở",
      "counts.firing": "kích hoạt",
      "search.label": "Tìm thiết bị",
      "search.placeholder": "Tìm thiết bị theo tên hoặc mã  ( / )",
      "filter.kind": "Loại",
      "filter.kind.sensor": "Cảm biến",
      "filter.kind.camera": "Camera",
      "filter.kind.site": "Đường truyền",
      "filter.area": "Khu vực",
      "filter.area.all": "Tất cả khu vực",
      "filter.severity": "Mức độ",
      "filter.sev.all": "Tất cả thiết bị",
      "filter.sev.critical": "Nghiêm trọng",
      "filter.sev.major": "Cao trở lên",
      "filter.sev.minor": "Thấp trở lên",
      "filter.sev.info": "Mọi cảnh báo",
      "filter.reset": "Bỏ lọc",
      "filter.shown": "Hiển thị {n} / {m} thiết bị",
      "map.label": "Bản đồ tỉnh",
      "map.error": "Không tải được bản đồ: {msg}",
      "devices.error": "Không tải được danh sách thiết bị",
      "tip.cluster": "{n} thiết bị, {a} cảnh báo",
      "legend.title": "Chú giải",
      "legend.camera": "Viền sáng: camera",
      "legend.site": "Vòng nét đứt: đường truyền/nguồn",
      "legend.cluster": "Thu nhỏ: gộp theo khu vực (số thiết bị · số cảnh báo)",
      "feed.title": "Cảnh báo trực tiếp",
      "feed.empty": "Không có cảnh báo đang mở",
      "feed.more": "… và {n} cảnh báo khác (dùng bộ lọc)",
      "feed.ack": "Xác nhận",
      "feed.acking": "Đang gửi…",
      "feed.value": "giá trị",
      "feed.ackedBy": "đã xác nhận",
      "feed.assignee": "Người xử lý",
      "feed.note": "Ghi chú",
      "feed.escalated": "Đã nâng mức",
      "feed.children": "{n} thiết bị bị ảnh hưởng cùng nguyên nhân",
      "feed.suppressed.maint": "Tạm ẩn: thiết bị đang bảo trì",
      "feed.suppressed.parent": "Hệ quả của sự cố gốc #{id}",
      "act.assign": "Giao việc",
      "act.note": "Ghi chú",
      "act.resolve": "Đóng",
      "act.maint": "Bảo trì",
      "act.cancel": "Hủy",
      "act.failed": "Không thực hiện được: {msg}",
      "act.assign.label": "Giao cho",
      "act.assign.placeholder": "Tên người xử lý (để trống: bỏ giao)",
      "act.assign.submit": "Giao",
      "act.note.label": "Ghi chú cho cảnh báo",
      "act.note.placeholder": "Nội dung ghi chú",
      "act.note.submit": "Lưu ghi chú",
      "act.resolve.label": "Đóng cảnh báo",
      "act.resolve.placeholder": "Cách xử lý (không bắt buộc)",
      "act.resolve.submit": "Đóng cảnh báo",
      "act.maint.label": "Đưa thiết bị vào bảo trì",
      "act.maint.placeholder": "Lý do bảo trì",
      "act.maint.duration": "Thời gian bảo trì",
      "act.maint.submit": "Bắt đầu bảo trì",
      "dur.30": "30 phút",
      "dur.60": "1 giờ",
      "dur.120": "2 giờ",
      "dur.240": "4 giờ",
      "dur.480": "8 giờ",
      "dur.1440": "24 giờ",
      "maint.until": "Đang bảo trì đến {time}",
      "maint.end": "Kết thúc bảo trì",
      "sev.critical": "Nghiêm trọng",
      "sev.major": "Cao",
      "sev.minor": "Thấp",
      "sev.info": "Thông tin",
      "status.pending": "Chờ xác định",
      "status.firing": "Đang cảnh báo",
      "status.acknowledged": "Đã xác nhận",
      "status.resolved": "Đã xử lý",
      "status.suppressed": "Tạm ẩn",
      "status.flapping": "Chập chờn",
      "state.critical": "Cảnh báo nghiêm trọng",
      "state.major": "Cảnh báo mức cao",
      "state.minor": "Cảnh báo mức thấp",
      "state.info": "Thông tin",
      "state.pending": "Sắp cảnh báo",
      "state.problem": "Có sự cố",
      "state.offline": "Mất kết nối",
      "state.maintenance": "Đang bảo trì",
      "state.unknown": "Chưa có dữ liệu",
      "state.ok": "Bình thường",
      "kind.traffic_sensor": "Cảm biến giao thông",
      "kind.camera": "Camera",
      "kind.site": "Đường truyền / nguồn",
      "panel.close": "Đóng",
      "dev.speed": "Tốc độ",
      "dev.intensity": "Số xe (lần đo cuối)",
      "dev.occupancy": "Chiếm dụng",
      "dev.interval": "Chu kỳ đo",
      "dev.health": "Hình ảnh",
      "dev.fps": "Khung hình/giây",
      "dev.lastSeen": "Cập nhật lúc",
      "dev.never": "chưa nhận dữ liệu",
      "dev.alerts": "Cảnh báo đang mở",
      "unit.kmh": "km/h",
      "unit.veh": "xe",
      "health.ok": "Bình thường",
      "health.offline": "Mất kết nối",
      "health.unstable": "Không ổn định",
      "health.black": "Màn hình đen",
      "health.tampered": "Bị che",
      "health.frozen": "Đứng hình",
      "health.moved": "Lệch góc quay",
      "health.blurred": "Mờ",
      "health.low_fps": "Ít khung hình",
      "health.unknown": "Chưa đánh giá",
      "chart.title": "{n} giờ qua",
      "chart.speed": "Tốc độ (km/h)",
      "chart.vehicles": "Số xe / 5 phút",
      "chart.occupancy": "Chiếm dụng (%)",
      "chart.fps": "Khung hình/giây",
      "chart.health": "Dải màu: hình ảnh tốt",
      "chart.empty": "Chưa có dữ liệu",
      "chart.loading": "Đang tải…",
      "thumb.none": "Chưa có ảnh",
      "thumb.taken": "Ảnh lúc {time} ({ago})",
      "thumb.alt": "Ảnh mới nhất của {name}",
      "tz": "Giờ Việt Nam (GMT+7)",
      "wall.title": "Màn hình camera",
      "wall.ticker": "Cảnh báo mới nhất",
      "wall.cameras": "camera",
      "wall.problems": "sự cố",
      "wall.alerts": "cảnh báo",
      "wall.picture": "ảnh {ago}",
      "wall.offline": "MẤT KẾT NỐI",
      "wall.all": "Tất cả {m} camera · camera có cảnh báo lên đầu",
      "wall.page": "Trang {p}/{n} · {m} camera · camera có cảnh báo luôn hiển thị",
      "leader.title": "Tổng quan tình hình",
      "leader.refresh": "Làm mới",
      "leader.kpis": "Chỉ số chính",
      "leader.cameras": "Camera hoạt động",
      "leader.sensors": "Cảm biến hoạt động",
      "leader.today": "Hôm nay",
      "leader.unit.cameras": "camera",
      "leader.unit.sensors": "cảm biến",
      "leader.inMaint": "bảo trì",
      "leader.congestion": "Chỉ số ùn tắc",
      "leader.congestion.def": "Tỉ lệ điểm đo có tốc độ dưới 50 % tốc độ thông thoáng (15 phút qua)",
      "leader.points": "điểm đo ùn tắc",
      "leader.alerts": "Cảnh báo đang mở",
      "leader.trend": "24 giờ qua",
      "leader.trend.sensors": "Cảm biến hoạt động (%)",
      "leader.trend.cameras": "Camera hình ảnh tốt (%)",
      "leader.trend.congestion": "Chỉ số ùn tắc (%)",
      "leader.hotspots": "5 điểm chậm nhất",
      "leader.noHotspots": "Chưa có số liệu giao thông trong 15 phút qua",
      "leader.ofFree": "tốc độ thông thoáng",
      "leader.congested": "Ùn tắc",
      "leader.areas": "Theo khu vực",
      "leader.area": "Khu vực",
      "leader.col.cameras": "Camera",
      "leader.col.sensors": "Cảm biến",
      "leader.col.nowToday": "hiện tại / hôm nay",
      "leader.col.congestion": "Ùn tắc",
      "leader.col.alerts": "Cảnh báo",
      "leader.updated": "Số liệu lúc {time} · tự cập nhật mỗi 30 giây",
      "leader.stale": "Mất kết nối — số liệu lúc {time}",
      "leader.failed": "Không tải được số liệu",
    },
    en: {
      "app.title": "Intelligent Operations Centre",
      "app.subtitle": "Binh Phuoc province · Operations map",
      "nav.label": "Screens",
      "nav.map": "Map",
      "nav.wall": "Video wall",
      "nav.leader": "Summary",
      "lang.toggle": "Tiếng Việt",
      "lang.toggle.title": "Chuyển sang tiếng Việt",
      "conn.live": "Live",
      "conn.connecting": "Connecting…",
      "conn.reconnecting": "Reconnecting…",
      "conn.ago": "last update {n} s ago",
      "conn.resync": "Resynchronising…",
      "ago.s": "{n} s ago",
      "ago.m": "{n} min ago",
      "ago.h": "{n} h ago",
      "err.auth": "Sign-in required",
      "counts.devices": "Devices",
      "counts.ok": "OK",
      "counts.alert": "Alert",
      "counts.problem": "Faulty",
      "counts.nodata": "No data",
      "counts.open": "Open alerts",
      "counts.firing": "firing",
      "search.label": "Find a device",
      "search.placeholder": "Find a device by name or id  ( / )",
      "filter.kind": "Kind",
      "filter.kind.sensor": "Sensors",
      "filter.kind.camera": "Cameras",
      "filter.kind.site": "Links",
      "filter.area": "Area",
      "filter.area.all": "All areas",
      "filter.severity": "Severity",
      "filter.sev.all": "All devices",
      "filter.sev.critical": "Critical",
      "filter.sev.major": "Major and above",
      "filter.sev.minor": "Minor and above",
      "filter.sev.info": "Any alert",
      "filter.reset": "Clear filters",
      "filter.shown": "Showing {n} / {m} devices",
      "map.label": "Province map",
      "map.error": "Could not load the map: {msg}",
      "devices.error": "Could not load devices",
      "tip.cluster": "{n} devices, {a} in alert",
      "legend.title": "Legend",
      "legend.camera": "Light outline: camera",
      "legend.site": "Dashed ring: link / power feed",
      "legend.cluster": "Zoomed out: grouped by area (devices · alerts)",
      "feed.title": "Live alerts",
      "feed.empty": "No open alerts",
      "feed.more": "… and {n} more alerts (use the filters)",
      "feed.ack": "Acknowledge",
      "feed.acking": "Sending…",
      "feed.value": "value",
      "feed.ackedBy": "acknowledged",
      "feed.assignee": "Assigned to",
      "feed.note": "Note",
      "feed.escalated": "Escalated",
      "feed.children": "{n} devices affected by the same cause",
      "feed.suppressed.maint": "Held back: device in maintenance",
      "feed.suppressed.parent": "Caused by root alert #{id}",
      "act.assign": "Assign",
      "act.note": "Note",
      "act.resolve": "Resolve",
      "act.maint": "Maintenance",
      "act.cancel": "Cancel",
      "act.failed": "Could not do it: {msg}",
      "act.assign.label": "Assign to",
      "act.assign.placeholder": "Who handles it (empty: unassign)",
      "act.assign.submit": "Assign",
      "act.note.label": "Note on this alert",
      "act.note.placeholder": "Your note",
      "act.note.submit": "Save note",
      "act.resolve.label": "Resolve alert",
      "act.resolve.placeholder": "What was done (optional)",
      "act.resolve.submit": "Resolve",
      "act.maint.label": "Put the device into maintenance",
      "act.maint.placeholder": "Reason",
      "act.maint.duration": "Duration",
      "act.maint.submit": "Start maintenance",
      "dur.30": "30 minutes",
      "dur.60": "1 hour",
      "dur.120": "2 hours",
      "dur.240": "4 hours",
      "dur.480": "8 hours",
      "dur.1440": "24 hours",
      "maint.until": "In maintenance until {time}",
      "maint.end": "End maintenance",
      "sev.critical": "Critical",
      "sev.major": "Major",
      "sev.minor": "Minor",
      "sev.info": "Info",
      "status.pending": "Pending",
      "status.firing": "Firing",
      "status.acknowledged": "Acknowledged",
      "status.resolved": "Resolved",
      "status.suppressed": "Suppressed",
      "status.flapping": "Flapping",
      "state.critical": "Critical alert",
      "state.major": "Major alert",
      "state.minor": "Minor alert",
      "state.info": "Info",
      "state.pending": "About to alert",
      "state.problem": "Faulty",
      "state.offline": "Offline",
      "state.maintenance": "In maintenance",
      "state.unknown": "No data yet",
      "state.ok": "OK",
      "kind.traffic_sensor": "Traffic sensor",
      "kind.camera": "Camera",
      "kind.site": "Link / power feed",
      "panel.close": "Close",
      "dev.speed": "Speed",
      "dev.intensity": "Vehicles (last reading)",
      "dev.occupancy": "Occupancy",
      "dev.interval": "Reading interval",
      "dev.health": "Picture",
      "dev.fps": "Frames per second",
      "dev.lastSeen": "Last seen",
      "dev.never": "never",
      "dev.alerts": "Open alerts",
      "unit.kmh": "km/h",
      "unit.veh": "vehicles",
      "health.ok": "Normal",
      "health.offline": "Offline",
      "health.unstable": "Unstable",
      "health.black": "Black picture",
      "health.tampered": "Covered",
      "health.frozen": "Frozen",
      "health.moved": "Moved",
      "health.blurred": "Blurred",
      "health.low_fps": "Low frame rate",
      "health.unknown": "Not assessed",
      "chart.title": "Last {n} hours",
      "chart.speed": "Speed (km/h)",
      "chart.vehicles": "Vehicles / 5 min",
      "chart.occupancy": "Occupancy (%)",
      "chart.fps": "Frames per second",
      "chart.health": "Strip: good picture",
      "chart.empty": "No data yet",
      "chart.loading": "Loading…",
      "thumb.none": "No picture yet",
      "thumb.taken": "Picture at {time} ({ago})",
      "thumb.alt": "Latest picture of {name}",
      "tz": "Vietnam time (GMT+7)",
      "wall.title": "Video wall",
      "wall.ticker": "Newest alerts",
      "wall.cameras": "cameras",
      "wall.problems": "faulty",
      "wall.alerts": "in alert",
      "wall.picture": "picture {ago}",
      "wall.offline": "OFFLINE",
      "wall.all": "All {m} cameras · cameras in alert first",
      "wall.page": "Page {p}/{n} · {m} cameras · cameras in alert always shown",
      "leader.title": "Province at a glance",
      "leader.refresh": "Refresh",
      "leader.kpis": "Key figures",
      "leader.cameras": "Cameras working",
      "leader.sensors": "Sensors working",
      "leader.today": "Today",
      "leader.unit.cameras": "cameras",
      "leader.unit.sensors": "sensors",
      "leader.inMaint": "in maintenance",
      "leader.congestion": "Congestion index",
      "leader.congestion.def": "Share of sensors slower than 50 % of free-flow speed (last 15 min)",
      "leader.points": "sensors congested",
      "leader.alerts": "Open alerts",
      "leader.trend": "Last 24 hours",
      "leader.trend.sensors": "Sensors working (%)",
      "leader.trend.cameras": "Cameras with a good picture (%)",
      "leader.trend.congestion": "Congestion index (%)",
      "leader.hotspots": "5 slowest points",
      "leader.noHotspots": "No traffic readings in the last 15 minutes",
      "leader.ofFree": "of free-flow speed",
      "leader.congested": "Congested",
      "leader.areas": "By area",
      "leader.area": "Area",
      "leader.col.cameras": "Cameras",
      "leader.col.sensors": "Sensors",
      "leader.col.nowToday": "now / today",
      "leader.col.congestion": "Congestion",
      "leader.col.alerts": "Alerts",
      "leader.updated": "Figures at {time} · refreshed every 30 s",
      "leader.stale": "Connection lost — figures from {time}",
      "leader.failed": "Could not load the figures",
    },
  };

  const STORAGE_KEY = "ioc.lang";
  const listeners = [];
  const missing = new Set();

  function initialLang() {
    const q = new URLSearchParams(window.location.search).get("lang");
    if (q === "vi" || q === "en") return q;
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
    const table = STRINGS[lang];
    let s = table[key];
    if (s === undefined) {
      missing.add(lang + ":" + key);
      s = STRINGS.vi[key] !== undefined ? STRINGS.vi[key] : key;
    }
    if (vars) {
      for (const [k, v] of Object.entries(vars)) s = s.split("{" + k + "}").join(String(v));
    }
    return s;
  }

  function applyStatic(root) {
    const r = root || document;
    r.querySelectorAll("[data-i18n]").forEach((el) => (el.textContent = t(el.getAttribute("data-i18n"))));
    r.querySelectorAll("[data-i18n-title]").forEach((el) => (el.title = t(el.getAttribute("data-i18n-title"))));
    r.querySelectorAll("[data-i18n-placeholder]").forEach((el) => (el.placeholder = t(el.getAttribute("data-i18n-placeholder"))));
    r.querySelectorAll("[data-i18n-aria]").forEach((el) => el.setAttribute("aria-label", t(el.getAttribute("data-i18n-aria"))));
    document.documentElement.lang = lang;
    document.title = t(document.documentElement.dataset.titleKey || "app.title") + (document.documentElement.dataset.titleKey ? " · IOC" : "");
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
      const base = { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
      fmtCache[key] = new Intl.DateTimeFormat(locale, kind === "time" ? base : Object.assign({ day: "2-digit", month: "2-digit" }, base));
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
    missing,
    keys: (l) => Object.keys(STRINGS[l || "vi"]),
    get lang() {
      return lang;
    },
    onChange(fn) {
      listeners.push(fn);
    },
  };
})();
