"""Operations routes: readiness of this API process, and how fresh each source of data is.

``GET /api/v1/health`` (routes.py) is liveness; ``GET /api/v1/ready`` says whether this process
can serve (database reachable, live stream listening) so a load balancer sends it traffic;
``GET /api/v1/freshness`` is what every screen shows as "last update N s ago", per source, for
machines: a stale wall is noticed without looking at it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from ioc.api.auth import Viewer
from ioc.api.deps import Conn
from streams import metrics as stream_metrics

router = APIRouter(prefix="/api/v1", tags=["operations"])

READY_DB_TIMEOUT_S = 3.0
STREAM_READ_MAX_S = 10.0  # the hub reads the events log every second when all is well


class ReadyOut(BaseModel):
    status: Literal["ready", "not ready"]
    database: bool = Field(description="a pooled connection answered SELECT 1")
    stream: bool = Field(description="the event hub listens and read the events log lately")
    stream_position: int


async def _database_answers(request: Request) -> bool:
    try:
        async with asyncio.timeout(READY_DB_TIMEOUT_S):
            async with request.app.state.pool.connection(timeout=READY_DB_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
    except Exception:  # any failure means not ready; the reason is in the pool's own logs
        return False
    return True


@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "not ready: see which part failed"}},
)
async def ready(request: Request, response: Response) -> dict[str, Any]:
    """Readiness (public, for load balancers and orchestrators): 200 when this process reaches
    the database and its live stream is listening, else 503."""
    hub = request.app.state.hub
    database = await _database_answers(request)
    stream = bool(
        hub.listening
        and hub.read_at is not None
        and time.monotonic() - hub.read_at <= STREAM_READ_MAX_S
    )
    stream_metrics.DATABASE_UP.set(database)
    ok = database and stream
    response.status_code = 200 if ok else 503
    return {
        "status": "ready" if ok else "not ready",
        "database": database,
        "stream": stream,
        "stream_position": hub.position,
    }


# ------------------------------------------------------------------------------ freshness ---

SOURCES = ("traffic", "cameras", "alerts", "rollups", "events")


class SourceFreshness(BaseModel):
    newest: datetime | None = Field(description="time of the source's newest data (None: none)")
    age_seconds: float | None
    stale_after_seconds: float
    stale: bool
    detail: dict[str, Any] = Field(default_factory=dict)


class FreshnessOut(BaseModel):
    now: datetime = Field(description="the database's clock, which the ages are measured by")
    stale: list[str] = Field(description="the sources that are stale now")
    sources: dict[str, SourceFreshness]


# One round trip; each part reads an index's first entry (or a one-row table), never a scan.
FRESHNESS_SQL = """
SELECT clock_timestamp() AS now,
       (SELECT max(received_at) FROM (
            SELECT received_at FROM traffic_observations ORDER BY time DESC LIMIT 100) r
       ) AS traffic,
       (SELECT time FROM traffic_observations ORDER BY time DESC LIMIT 1) AS traffic_observed,
       (SELECT time FROM camera_health ORDER BY time DESC LIMIT 1) AS cameras,
       (SELECT at FROM role_heartbeats WHERE role = 'alerts') AS alerts,
       (SELECT watermark FROM rollup_state WHERE name = 'traffic') AS rollups,
       (SELECT watermark FROM rollup_state WHERE name = 'availability') AS rollups_availability,
       (SELECT time FROM events ORDER BY id DESC LIMIT 1) AS events,
       (SELECT max(id) FROM events) AS events_id
"""


def _source(newest: datetime | None, now: datetime, limit: float, **detail: Any) -> dict[str, Any]:
    age = None if newest is None else max((now - newest).total_seconds(), 0.0)
    return {
        "newest": newest,
        "age_seconds": None if age is None else round(age, 3),
        "stale_after_seconds": limit,
        "stale": age is None or age > limit,
        "detail": detail,
    }


@router.get("/freshness", response_model=FreshnessOut)
async def freshness(request: Request, conn: Conn, who: Viewer) -> dict[str, Any]:
    """Per source, the time of its newest data, its age and whether it is stale:

    - ``traffic``: when the newest readings were received (``detail.observed_at``: their time);
    - ``cameras``: the newest camera health row;
    - ``alerts``: the alert engine's newest heartbeat (it beats every few seconds);
    - ``rollups``: the traffic rollup watermark (received time rolled up to);
    - ``events``: the newest event of the log. A quiet centre writes no events, so ``events`` is
      stale only when this process's live stream is not delivering: not listening, or behind
      the log by an event older than the threshold.
    """
    limits: dict[str, float] = request.app.state.settings.freshness_stale_seconds

    def limit(source: str) -> float:
        return float(limits.get(source, limits.get("default", 120.0)))

    async with conn.cursor() as cur:
        await cur.execute(FRESHNESS_SQL)
        row = await cur.fetchone()
    assert row is not None
    now: datetime = row["now"]
    hub = request.app.state.hub
    sources = {
        "traffic": _source(
            row["traffic"], now, limit("traffic"), observed_at=row["traffic_observed"]
        ),
        "cameras": _source(row["cameras"], now, limit("cameras")),
        "alerts": _source(row["alerts"], now, limit("alerts")),
        "rollups": _source(
            row["rollups"], now, limit("rollups"), availability=row["rollups_availability"]
        ),
        "events": _events(row, now, limit("events"), hub),
    }
    return {
        "now": now,
        "stale": [name for name, s in sources.items() if s["stale"]],
        "sources": sources,
    }


def _events(row: dict[str, Any], now: datetime, limit: float, hub: Any) -> dict[str, Any]:
    out = _source(row["events"], now, limit, newest_id=row["events_id"], position=hub.position)
    reading = hub.read_at is not None and time.monotonic() - hub.read_at <= limit
    behind = row["events_id"] is not None and row["events_id"] > hub.position
    late = behind and (out["age_seconds"] or 0.0) > limit
    out["stale"] = not (hub.listening and reading) or late
    out["detail"]["listening"] = bool(hub.listening)
    return out
