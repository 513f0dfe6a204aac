"""A traffic sensor's current status and the reason a person can read, from its latest state.

Pure: the API computes it on read from ``device_state`` so it is never out of date, and the alert
engine can use the same function for offline/silent rules.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Status = Literal["ok", "alert", "offline", "silent", "stuck", "problem", "unknown"]

# A sensor is silent after missing this many of its readings, and never sooner than MIN_GRACE.
MISSED_READINGS = 3
MIN_GRACE = timedelta(seconds=30)
STUCK_AFTER = 10  # consecutive unchanged batches of readings


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    status: Status
    reason: str
    reason_en: str


def _ago(delta: timedelta) -> tuple[str, str]:
    s = int(delta.total_seconds())
    if s < 120:
        return f"{s} giây", f"{s} s"
    if s < 7200:
        return f"{s // 60} phút", f"{s // 60} min"
    return f"{s // 3600} giờ", f"{s // 3600} h"


@functools.lru_cache(maxsize=64)
def silence_limit(interval_s: float | None) -> timedelta:
    """How long a sensor reporting every ``interval_s`` may stay quiet before it is silent."""
    return max(MIN_GRACE, timedelta(seconds=(interval_s or 60) * MISSED_READINGS))


def traffic_sensor_reporting(
    *, now: datetime, last_seen: datetime | None, online: bool | None, interval_s: float | None
) -> bool:
    """Reporting now: not offline, and heard within its silence limit (status ok or stuck).
    The cheap question ``traffic_sensor_status`` answers first, for counting many sensors."""
    return (
        online is not False
        and last_seen is not None
        and now - last_seen <= silence_limit(interval_s)
    )


def traffic_sensor_status(
    *,
    now: datetime,
    last_seen: datetime | None,
    online: bool | None,
    stuck_count: int,
    interval_s: float | None,
    alerting: bool,
) -> DeviceStatus:
    """Worst first: an open alert, then offline (Last Will), silence, stuck values."""
    if alerting:
        return DeviceStatus("alert", "Có cảnh báo đang mở", "Has an open alert")
    if online is False:
        return DeviceStatus(
            "offline", "Thiết bị báo mất kết nối (Last Will)", "Device reported offline (Last Will)"
        )
    if last_seen is None:
        return DeviceStatus("unknown", "Chưa nhận được dữ liệu", "No data received yet")
    silent_for = now - last_seen
    if silent_for > silence_limit(interval_s):
        vi, en = _ago(silent_for)
        return DeviceStatus("silent", f"Không có dữ liệu trong {vi}", f"No reading for {en}")
    if stuck_count >= STUCK_AFTER:
        return DeviceStatus(
            "stuck",
            f"Giá trị không đổi qua {stuck_count} lần đo",
            f"Values unchanged for {stuck_count} readings",
        )
    return DeviceStatus("ok", "Hoạt động bình thường", "Working normally")


def device_status(
    *,
    kind: str,
    now: datetime,
    last_seen: datetime | None,
    online: bool | None,
    stuck_count: int,
    last: dict[str, object] | None,
    alerting: bool,
) -> DeviceStatus:
    """Status of any device kind, from its latest state (see ``traffic_sensor_status``)."""
    if kind == "site":  # a site has no telemetry of its own: it is known by its alerts
        if alerting:
            return DeviceStatus("alert", "Mất kết nối khu vực", "Site link or power down")
        return DeviceStatus("ok", "Đường truyền hoạt động", "Link up")
    if kind == "camera":
        if alerting:
            return DeviceStatus("alert", "Có cảnh báo đang mở", "Has an open alert")
        status = (last or {}).get("status")
        if status is None:
            return DeviceStatus("unknown", "Chưa có đánh giá", "Not assessed yet")
        if status == "ok":
            return DeviceStatus("ok", "Hình ảnh bình thường", "Picture normal")
        reasons = (last or {}).get("reasons") or []
        detail = ""
        if isinstance(reasons, list) and reasons and isinstance(reasons[0], dict):
            detail = str(reasons[0].get("detail") or reasons[0].get("code") or "")
        if status == "offline":
            return DeviceStatus(
                "offline",
                f"Mất kết nối camera {detail}".strip(),
                f"Camera unreachable {detail}".strip(),
            )
        return DeviceStatus(
            "problem",
            f"Hình ảnh có vấn đề: {status}",
            f"Picture problem: {status} {detail}".strip(),
        )
    interval = (last or {}).get("interval_s")
    return traffic_sensor_status(
        now=now,
        last_seen=last_seen,
        online=online,
        stuck_count=stuck_count,
        interval_s=float(interval) if isinstance(interval, int | float) else None,
        alerting=alerting,
    )
