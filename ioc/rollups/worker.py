"""``ioc rollups``: the long-running owner of rollup maintenance and retention.

Every ``interval_seconds`` it rolls up what was received since the last tick (without waiting
when it is catching up), and every ``retention_every_seconds`` it drops expired chunks. On a
'timescale'-licence server it first creates the per-sensor continuous aggregates. Running two
is safe (the maintainer locks its state rows); one is enough.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog

from ioc.db.connect import connect, describe
from ioc.rollups import metrics as m
from ioc.rollups import retention
from ioc.rollups.config import RollupSettings
from ioc.rollups.licence import TSL, ensure_tsl, licence
from ioc.rollups.maintain import Maintainer, TickResult

log = structlog.get_logger("ioc.rollups")


class RollupWorker:
    def __init__(self, *, dsn: str, settings: RollupSettings) -> None:
        self.dsn = dsn
        self.settings = settings
        self.ticks = 0
        self.readings = 0
        self._stopping = asyncio.Event()
        self._maintainer: Maintainer | None = None
        self._retention_at = 0.0
        self.last_tick_at: float | None = None  # monotonic end of the last good tick

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect(self.dsn, autocommit=True)
                    self._maintainer = await self._start(conn)
                assert self._maintainer is not None
                started = time.monotonic()
                result = await self._maintainer.tick(conn)
                self._count(result, time.monotonic() - started)
                if time.monotonic() >= self._retention_at:
                    await retention.apply(conn, self.settings)
                    self._retention_at = time.monotonic() + self.settings.retention_every_seconds
                backoff = 0.5
            except (psycopg.OperationalError, OSError, RuntimeError) as exc:
                m.ERRORS.inc()
                log.warning("rollup tick failed; retrying", error=describe(exc))
                if conn is not None:
                    await conn.close()
                conn = None
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if result.caught_up:
                await self._sleep(self.settings.interval_seconds)
        if conn is not None:
            await conn.close()

    async def once(self) -> tuple[TickResult, dict[str, list[str]]]:
        """Catch up with everything received so far, apply retention, return both."""
        conn = await connect(self.dsn, autocommit=True)
        try:
            maintainer = await self._start(conn)
            result = await maintainer.catch_up(conn)
            return result, await retention.apply(conn, self.settings)
        finally:
            await conn.close()

    async def _start(self, conn: psycopg.AsyncConnection[Any]) -> Maintainer:
        edition = await licence(conn)
        tsl = edition == TSL
        if tsl:
            await ensure_tsl(self.dsn)
        log.info(
            "rollups running",
            licence=edition or "unknown",
            per_sensor="continuous aggregates" if tsl else "application",
        )
        return Maintainer(self.settings, tsl=tsl)

    def _count(self, r: TickResult, seconds: float) -> None:
        self.ticks += 1
        self.readings += r.readings
        self.last_tick_at = time.monotonic()
        m.TICKS.inc()
        m.TICK_SECONDS.observe(seconds)
        m.LAST_TICK.set_to_current_time()
        m.READINGS.inc(r.readings)
        m.TOO_LATE.inc(r.too_late)
        now = datetime.now(UTC)
        for name, mark in (
            ("traffic", r.traffic_watermark),
            ("availability", r.availability_watermark),
        ):
            if mark is not None:
                m.LAG_SECONDS.labels(name).set(max((now - mark).total_seconds(), 0.0))
        if r.readings or r.slots or r.too_late:
            log.debug(
                "rolled up",
                readings=r.readings,
                slots=r.slots,
                too_late=r.too_late,
                seconds=round(sum(r.seconds.values()), 3),
            )
        if not r.caught_up:
            log.info("catching up", received_until=str(r.traffic_watermark))

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass
