"""Measuring each rule's metric per device, and the context the lifecycle needs.

Every function returns plain dicts; no decisions are made here (``ioc.domain.lifecycle`` makes
them). Metric names are whitelisted: nothing from the rules file reaches SQL text.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ioc.domain.device_status import traffic_sensor_status
from ioc.domain.rules import Rule

_MEAN_COLUMNS = {
    "average_speed": "average_speed",
    "occupancy": "occupancy",
    "intensity": "intensity",
}
BASELINE_WEEKS = 4
BASELINE_MIN_READINGS = 20
BASELINE_TTL_S = 600.0
LOCAL_TZ = "Asia/Ho_Chi_Minh"

Values = dict[str, float | None]


@dataclass
class Topology:
    """Areas and device placement, cached by the engine and refreshed now and then."""

    lineage: dict[str, list[str]]  # area id -> [root, ..., area]
    device_area: dict[str, str]
    device_kind: dict[str, str]
    device_parent: dict[str, str]
    loaded_at: float


async def _rows(conn: psycopg.AsyncConnection[Any], sql: str, params: Any = None) -> list[Any]:
    async with conn.cursor() as cur:
        await cur.execute(sql, params)
        return list(await cur.fetchall())


async def topology(conn: psycopg.AsyncConnection[Any]) -> Topology:
    parent = {r["id"]: r["parent_id"] for r in await _rows(conn, "SELECT id, parent_id FROM areas")}
    lineage: dict[str, list[str]] = {}
    for area in parent:
        chain: list[str] = []
        node: str | None = area
        while node is not None and node not in chain:
            chain.append(node)
            node = parent.get(node)
        lineage[area] = chain[::-1]
    devices = await _rows(conn, "SELECT id, kind, area_id, parent_id FROM devices WHERE enabled")
    return Topology(
        lineage=lineage,
        device_area={d["id"]: d["area_id"] for d in devices},
        device_kind={d["id"]: d["kind"] for d in devices},
        device_parent={d["id"]: d["parent_id"] for d in devices if d["parent_id"]},
        loaded_at=time.monotonic(),
    )


async def _means(
    conn: psycopg.AsyncConnection[Any], rule: Rule, now: datetime, window: timedelta
) -> Values:
    column = _MEAN_COLUMNS[rule.metric if rule.metric in _MEAN_COLUMNS else "average_speed"]
    rows = await _rows(
        conn,
        f"""SELECT o.device_id, avg(o.{column})::float8 AS value
            FROM traffic_observations o JOIN devices d ON d.id = o.device_id
            WHERE o.time > %s AND o.time <= %s AND d.kind = %s AND d.enabled
            GROUP BY o.device_id""",
        (now - window, now, rule.device_kind),
    )
    return {r["device_id"]: r["value"] for r in rows}


async def _intensity_sum(conn: psycopg.AsyncConnection[Any], rule: Rule, now: datetime) -> Values:
    """Vehicles in the window; None when this window and the one before both saw none (a quiet
    road says nothing), so a drop to zero is a breach and traffic coming back clears it."""
    w = timedelta(seconds=rule.window_s)
    rows = await _rows(
        conn,
        """SELECT o.device_id,
                  coalesce(sum(o.intensity) FILTER (WHERE o.time > %(mid)s), 0)::float8 AS now_sum,
                  count(*) FILTER (WHERE o.time > %(mid)s) AS now_n,
                  coalesce(sum(o.intensity) FILTER (WHERE o.time <= %(mid)s), 0)::float8 AS before
           FROM traffic_observations o JOIN devices d ON d.id = o.device_id
           WHERE o.time > %(start)s AND o.time <= %(now)s AND d.kind = %(kind)s AND d.enabled
           GROUP BY o.device_id""",
        {"start": now - 2 * w, "mid": now - w, "now": now, "kind": rule.device_kind},
    )
    out: Values = {}
    for r in rows:
        if r["now_n"] == 0 or (r["now_sum"] == 0 and r["before"] == 0):
            out[r["device_id"]] = None
        else:
            out[r["device_id"]] = r["now_sum"]
    return out


class Baselines:
    """Each sensor's usual mean speed for this hour of the week (local time), over the previous
    weeks; cached, since it changes slowly."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[float, dict[str, float]]] = {}

    async def get(self, conn: psycopg.AsyncConnection[Any], now: datetime) -> dict[str, float]:
        local = now.astimezone(_tz())
        key = (local.isoweekday(), local.hour)
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < BASELINE_TTL_S:
            return hit[1]
        rows = await _rows(
            conn,
            """SELECT device_id, avg(average_speed)::float8 AS speed, count(*) AS n
               FROM traffic_observations
               WHERE time > %(since)s AND time < %(day)s
                 AND extract(isodow FROM time AT TIME ZONE %(tz)s) = %(dow)s
                 AND extract(hour FROM time AT TIME ZONE %(tz)s) = %(hour)s
               GROUP BY device_id""",
            {
                "since": now - timedelta(weeks=BASELINE_WEEKS),
                "day": now - timedelta(hours=12),
                "tz": LOCAL_TZ,
                "dow": key[0],
                "hour": key[1],
            },
        )
        base = {
            r["device_id"]: r["speed"]
            for r in rows
            if r["n"] >= BASELINE_MIN_READINGS and r["speed"] > 0
        }
        self._cache[key] = (time.monotonic(), base)
        return base


def _tz() -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(LOCAL_TZ)


async def _states(conn: psycopg.AsyncConnection[Any], kind: str) -> list[Any]:
    return await _rows(
        conn,
        """SELECT d.id, d.parent_id, s.last_seen, s.online, s.last,
                  coalesce(s.stuck_count, 0) AS stuck_count
           FROM devices d LEFT JOIN device_state s ON s.device_id = d.id
           WHERE d.kind = %s AND d.enabled""",
        (kind,),
    )


def _silence(row: Any, now: datetime) -> float | None:
    if row["online"] is False:
        return math.inf
    if row["last_seen"] is None:
        return None
    return max(float((now - row["last_seen"]).total_seconds()), 0.0)


def _down(row: Any, now: datetime) -> bool:
    status = traffic_sensor_status(
        now=now,
        last_seen=row["last_seen"],
        online=row["online"],
        stuck_count=0,
        interval_s=(row["last"] or {}).get("interval_s"),
        alerting=False,
    ).status
    return status in ("offline", "silent")


async def measure(
    conn: psycopg.AsyncConnection[Any], rule: Rule, now: datetime, baselines: Baselines
) -> Values:
    m = rule.metric
    if m in _MEAN_COLUMNS:
        return await _means(conn, rule, now, timedelta(seconds=rule.window_s))
    if m == "intensity_sum":
        return await _intensity_sum(conn, rule, now)
    if m == "speed_vs_baseline":
        speeds = await _means(conn, rule, now, timedelta(seconds=rule.window_s))
        base = await baselines.get(conn, now)
        return {
            d: (v / base[d] if d in base and v is not None else None) for d, v in speeds.items()
        }
    if m == "silence_s":
        return {r["id"]: _silence(r, now) for r in await _states(conn, rule.device_kind)}
    if m == "camera_problem":
        out: Values = {}
        for r in await _states(conn, "camera"):
            status = (r["last"] or {}).get("status")
            out[r["id"]] = None if status is None else float(status != "ok")
        return out
    if m == "children_down_ratio":
        children = [r for r in await _states(conn, "traffic_sensor") if r["parent_id"]]
        children += [r for r in await _states(conn, "camera") if r["parent_id"]]
        total: dict[str, int] = {}
        down: dict[str, int] = {}
        for r in children:
            total[r["parent_id"]] = total.get(r["parent_id"], 0) + 1
            down[r["parent_id"]] = down.get(r["parent_id"], 0) + _down(r, now)
        return {site: down[site] / n for site, n in total.items()}
    raise ValueError(f"unknown metric {m}")


async def in_maintenance(conn: psycopg.AsyncConnection[Any], now: datetime) -> set[str]:
    rows = await _rows(
        conn,
        """WITH RECURSIVE active AS (
               SELECT device_id, area_id FROM maintenance
               WHERE cancelled_at IS NULL AND starts_at <= %(now)s AND ends_at > %(now)s),
           areas_in AS (
               SELECT a.id FROM areas a JOIN active m ON m.area_id = a.id
               UNION SELECT a.id FROM areas a JOIN areas_in p ON a.parent_id = p.id)
           SELECT id FROM devices WHERE area_id IN (SELECT id FROM areas_in)
           UNION SELECT device_id FROM active WHERE device_id IS NOT NULL""",
        {"now": now},
    )
    return {r["id"] for r in rows}


async def root_cause_alerts(
    conn: psycopg.AsyncConnection[Any], rule_ids: list[str]
) -> dict[str, int]:
    """device id -> its open root-cause alert (firing, acknowledged or flapping)."""
    if not rule_ids:
        return {}
    rows = await _rows(
        conn,
        """SELECT DISTINCT ON (device_id) device_id, id FROM alerts
           WHERE rule_id = ANY(%s) AND status IN ('firing', 'acknowledged', 'flapping')
           ORDER BY device_id, id""",
        (rule_ids,),
    )
    return {r["device_id"]: r["id"] for r in rows}


async def root_cause_resolved(
    conn: psycopg.AsyncConnection[Any], rule_ids: list[str], since: datetime
) -> dict[str, datetime]:
    """device id -> when its last root-cause alert resolved, if after ``since``."""
    if not rule_ids:
        return {}
    rows = await _rows(
        conn,
        """SELECT device_id, max(resolved_at) AS at FROM alerts
           WHERE rule_id = ANY(%s) AND status = 'resolved' AND resolved_at > %s
           GROUP BY device_id""",
        (rule_ids, since),
    )
    return {r["device_id"]: r["at"] for r in rows}


async def recent_opens(
    conn: psycopg.AsyncConnection[Any], rule: Rule, now: datetime
) -> dict[str, int]:
    rows = await _rows(
        conn,
        """SELECT device_id, count(*) AS n FROM alerts
           WHERE rule_id = %s AND started_at > %s AND status = 'resolved'
           GROUP BY device_id""",
        (rule.id, now - timedelta(seconds=rule.flap_window_s)),
    )
    return {r["device_id"]: int(r["n"]) for r in rows}
