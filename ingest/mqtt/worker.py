"""The MQTT ingest worker: validate, batch, write with COPY, then acknowledge.

One writer per worker. A batch is flushed when it holds ``batch_size`` messages or its oldest
message is ``batch_seconds`` old. When the database is down the batch is retried with capped
backoff and nothing is acknowledged meanwhile, so the broker keeps (and stops sending) the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import psycopg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from ingest.mqtt.source import Delivery, MqttSource
from ioc.db import observations
from ioc.db.connect import connect
from ioc.db.observations import DeadLetter
from ioc.domain.wire import Reason, Rejected, TrafficObservation, parse_observation

log = structlog.get_logger("ingest.mqtt")

DEVICE_REFRESH_S = 30.0


class IngestWorker:
    def __init__(
        self, *, source: MqttSource, dsn: str, batch_size: int = 500, batch_seconds: float = 0.5
    ) -> None:
        self.source = source
        self.dsn = dsn
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.counters: Counter[str] = Counter()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._known: set[str] = set()
        self._known_at = 0.0
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Consume until :meth:`stop`; the batch in hand is written before returning."""
        last_report = time.monotonic()
        while not self._stopping.is_set():
            batch = await self._collect()
            if batch:
                await self._write_with_retry(batch)
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log.info("ingest stats", **self.counters)
        if self._conn is not None:
            await self._conn.close()

    def stop(self) -> None:
        self._stopping.set()

    async def _collect(self) -> list[Delivery]:
        queue = self.source.queue
        try:
            first = await asyncio.wait_for(queue.get(), timeout=0.5)
        except TimeoutError:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_seconds
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), timeout=remaining))
            except TimeoutError:
                break
        return batch

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.dsn, autocommit=True)
        return self._conn

    async def _refresh_known(self, conn: psycopg.AsyncConnection[Any], *, force: bool) -> None:
        if force or time.monotonic() - self._known_at > DEVICE_REFRESH_S:
            self._known = await observations.known_devices(conn, "traffic_sensor")
            self._known_at = time.monotonic()

    async def _write_with_retry(self, batch: list[Delivery]) -> None:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((psycopg.OperationalError, OSError, RuntimeError)),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.counters["db_retries"] += 1
                    log.warning(
                        "database write failed; retrying, not acknowledging",
                        attempt=attempt.retry_state.attempt_number,
                    )
                try:
                    await self._write(batch)
                except (psycopg.OperationalError, OSError, RuntimeError):
                    if self._conn is not None:
                        await self._conn.close()
                    self._conn = None
                    raise
        self.source.ack(batch)

    async def _write(self, batch: list[Delivery]) -> None:
        conn = await self._connection()
        now = datetime.now(UTC)
        parsed: list[tuple[Delivery, TrafficObservation | Rejected]] = [
            (d, parse_observation(d.topic, d.payload, now=now)) for d in batch
        ]
        unknown = any(
            isinstance(p, TrafficObservation) and p.device_id not in self._known for _, p in parsed
        )
        await self._refresh_known(conn, force=unknown and time.monotonic() - self._known_at > 5)
        good: list[TrafficObservation] = []
        bad: list[DeadLetter] = []
        for d, p in parsed:
            if isinstance(p, TrafficObservation) and p.device_id not in self._known:
                p = Rejected(Reason.UNKNOWN_DEVICE, f"device {p.device_id} is not registered")
            if isinstance(p, Rejected):
                bad.append(DeadLetter("mqtt", d.topic, p.reason, p.detail, d.payload))
            else:
                good.append(p)
        async with conn.transaction():
            result = await observations.write_batch(conn, good, bad)
        self.counters["received"] += len(batch)
        self.counters["stored"] += result.inserted
        self.counters["duplicates"] += result.duplicates
        for letter in bad:
            self.counters[f"dead_letter.{letter.reason}"] += 1
