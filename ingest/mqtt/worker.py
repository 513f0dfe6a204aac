"""The MQTT ingest worker: validate, batch, write with COPY, then acknowledge.

One writer per worker. A batch is whatever has arrived (up to ``batch_size``), after waiting at
most ``linger_s`` once for company: a quiet centre stores a reading within milliseconds, and a
busy one writes bigger batches because messages pile up while the previous batch is written. When the
database is down the batch is retried with capped backoff and nothing is acknowledged meanwhile:
the source stops reading, memory stays bounded and the backlog waits in the broker.
After each commit the worker NOTIFYs ``ioc_observations`` so the alert engine evaluates at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from ingest.mqtt import metrics as m
from ingest.mqtt.source import Delivery, MqttSource
from ioc.db import observations
from ioc.db.connect import DatabaseUnavailable, connect
from ioc.db.observations import Availability, DeadLetter
from ioc.domain import wire
from ioc.domain.wire import Reason, Rejected, TrafficObservation

log = structlog.get_logger("ingest.mqtt")

DEVICE_REFRESH_S = 30.0
DB_PING_S = 5.0  # when idle, prove the database still answers this often (readiness)
LETTERS_LOGGED = 20  # dead letters logged one by one per LETTERS_WINDOW_S; the rest only counted
LETTERS_WINDOW_S = 10.0
LATE_AFTER = timedelta(seconds=60)
RETRYABLE = (psycopg.OperationalError, DatabaseUnavailable, OSError)
SOURCE = "mqtt"


def _classify(
    d: Delivery, now: datetime, known: set[str]
) -> TrafficObservation | Availability | Rejected:
    """Pure decision for one message: an observation, an availability change, or a rejection."""
    avail_device = wire.device_id_from_availability_topic(d.topic)
    if avail_device is not None:
        state = wire.parse_availability(d.payload)
        if state is None:
            return Rejected(Reason.SCHEMA, "availability must be 'online' or 'offline'")
        if avail_device not in known:
            return Rejected(Reason.UNKNOWN_DEVICE, f"device {avail_device} is not registered")
        return Availability(avail_device, state == "online")
    parsed = wire.parse_observation(d.topic, d.payload, now=now)
    if isinstance(parsed, TrafficObservation) and parsed.device_id not in known:
        return Rejected(Reason.UNKNOWN_DEVICE, f"device {parsed.device_id} is not registered")
    return parsed


def _letter_id(topic: str, payload: bytes) -> str | None:
    """The correlation id of a rejected reading, when its topic and ``seq`` still say it."""
    device = wire.device_id_from_topic(topic)
    if device is None or len(payload) > 4096:
        return None
    try:
        seq = json.loads(payload).get("seq")
    except (ValueError, RecursionError, AttributeError):
        return None
    if isinstance(seq, int) and not isinstance(seq, bool):
        return wire.correlation_id(device, seq)
    return None


class IngestWorker:
    def __init__(
        self,
        *,
        source: MqttSource,
        dsn: str,
        batch_size: int = 500,
        batch_seconds: float = 0.5,
        linger_s: float = 0.02,
    ) -> None:
        self.linger_s = linger_s
        self.source = source
        self.dsn = dsn
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.counters: Counter[str] = Counter()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._known: set[str] = set()
        self._known_at = -DEVICE_REFRESH_S
        self._stopping = asyncio.Event()
        self.db_ok_at: float | None = None  # monotonic time of the last database success
        self._ping_at = 0.0
        self._letters_window, self._letters_logged = 0.0, 0

    async def run(self) -> None:
        """Consume until :meth:`stop`; the batch in hand is written before returning."""
        last_report = time.monotonic()
        while not self._stopping.is_set():
            batch = await self._collect()
            m.BACKLOG.set(self.source.queue.qsize())
            if batch:
                await self._write_with_retry(batch)
            elif time.monotonic() >= self._ping_at:
                await self._ping()
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                log.info("ingest stats", **self.counters)
        if self._conn is not None:
            await self._conn.close()

    def stop(self) -> None:
        self._stopping.set()

    def _db_ok(self) -> None:
        self.db_ok_at = time.monotonic()
        self._ping_at = self.db_ok_at + DB_PING_S
        m.DB_OK.set_to_current_time()

    async def _ping(self) -> None:
        """Idle: one ``SELECT 1``, so readiness knows the database answers before data comes."""
        self._ping_at = time.monotonic() + DB_PING_S
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await connect(self.dsn, autocommit=True)
            await self._conn.execute("SELECT 1")
        except RETRYABLE as exc:
            if self._conn is not None:
                await self._conn.close()
            self._conn = None
            log.debug("database ping failed", error=str(exc)[:200])
            return
        self._db_ok()

    async def _collect(self) -> list[Delivery]:
        queue = self.source.queue
        try:
            first = await asyncio.wait_for(queue.get(), timeout=0.5)
        except TimeoutError:
            return []
        batch = [first]
        lingered = False
        while len(batch) < self.batch_size:
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            if lingered or len(batch) >= self.batch_size:
                break
            # Nothing more in hand: wait a moment once, then write what there is. Under load
            # batches grow by themselves (messages pile up while the previous batch is written),
            # so a reading is never held back waiting for others.
            lingered = True
            try:
                wait = min(self.linger_s, self.batch_seconds)
                batch.append(await asyncio.wait_for(queue.get(), timeout=wait))
            except TimeoutError:
                break
        return batch

    async def _write_with_retry(self, batch: list[Delivery]) -> None:
        m.UNACKED.set(len(batch))
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type(RETRYABLE),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.2),
            reraise=True,
        ):
            with attempt:
                if attempt.retry_state.attempt_number > 1:
                    self.counters["db_retries"] += 1
                    m.DB_RETRIES.inc()
                    log.warning(
                        "database write failed; retrying, not acknowledging",
                        attempt=attempt.retry_state.attempt_number,
                        batch=len(batch),
                    )
                try:
                    await self._write(batch)
                except psycopg.DataError as exc:
                    # One poisoned row must not block the batch, nor be retried forever.
                    log.error("batch refused by the database; isolating", error=str(exc)[:200])
                    await self._write_isolating(batch)
                except RETRYABLE:
                    if self._conn is not None:
                        await self._conn.close()
                    self._conn = None
                    raise
        self.source.ack(batch)
        m.UNACKED.set(0)

    async def _write(self, batch: list[Delivery]) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.dsn, autocommit=True)
        conn = self._conn
        if time.monotonic() - self._known_at > DEVICE_REFRESH_S:
            await self._refresh_known(conn)
        now = datetime.now(UTC)
        decided = [(d, _classify(d, now, self._known)) for d in batch]
        if any(
            isinstance(r, Rejected) and r.reason is Reason.UNKNOWN_DEVICE for _, r in decided
        ) and (time.monotonic() - self._known_at > 5):
            await self._refresh_known(conn)  # a device may have been registered just now
            decided = [(d, _classify(d, now, self._known)) for d in batch]
        good: list[TrafficObservation] = []
        avail: list[Availability] = []
        bad: list[DeadLetter] = []
        for d, r in decided:
            if isinstance(r, TrafficObservation):
                good.append(r)
            elif isinstance(r, Availability):
                avail.append(r)
            else:
                bad.append(DeadLetter(SOURCE, d.topic, r.reason, r.detail, d.payload))
        started = time.monotonic()
        async with conn.transaction():
            result = await observations.write_batch(conn, good, bad, availability=avail)
        committed = datetime.now(UTC)
        self._db_ok()
        m.BATCH_SECONDS.observe(time.monotonic() - started)
        m.BATCH_SIZE.observe(len(batch))
        self._count(batch, good, avail, bad, result, committed)

    async def _write_isolating(self, batch: list[Delivery]) -> None:
        """Write message by message; what the database still refuses is dead-lettered."""
        for d in batch:
            try:
                await self._write([d])
            except psycopg.DataError as exc:
                assert self._conn is not None
                letter = DeadLetter(SOURCE, d.topic, Reason.DB_REJECTED, str(exc)[:200], d.payload)
                async with self._conn.transaction():
                    await observations.write_batch(self._conn, [], [letter])
                self._count(
                    [d], [], [], [letter], observations.BatchResult(0, 0, 1), datetime.now(UTC)
                )

    async def _refresh_known(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._known = await observations.known_devices(conn, "traffic_sensor")
        self._known_at = time.monotonic()

    def _count(
        self,
        batch: list[Delivery],
        good: list[TrafficObservation],
        avail: list[Availability],
        bad: list[DeadLetter],
        result: observations.BatchResult,
        committed: datetime,
    ) -> None:
        c = self.counters
        c["received"] += len(batch)
        c["retained"] += sum(d.retained for d in batch)
        c["stored"] += result.inserted
        c["duplicates"] += result.duplicates
        c["availability"] += len(avail)
        m.RECEIVED.labels(SOURCE).inc(len(batch))
        m.STORED.labels(SOURCE).inc(result.inserted)
        m.DUPLICATES.labels(SOURCE).inc(result.duplicates)
        if result.inserted:
            m.LAST_STORED.set_to_current_time()
        late = 0
        each = log.is_enabled_for(logging.DEBUG)  # a line per reading costs µs: debug only
        for o in good:
            lag = (committed - o.observed_at).total_seconds()
            m.LAG_SECONDS.observe(max(lag, 0.0))
            late += lag > LATE_AFTER.total_seconds()
            if each:
                log.debug(
                    "reading written",
                    correlation_id=wire.correlation_id(o.device_id, o.seq),
                    lag_s=round(lag, 3),
                )
        if late:
            c["late"] += late
            m.LATE.labels(SOURCE).inc(late)
        for a in avail:
            m.AVAILABILITY.labels("online" if a.online else "offline").inc()
        for letter in bad:
            c[f"dead_letter.{letter.reason}"] += 1
            m.REJECTED.labels(SOURCE, str(letter.reason)).inc()
            self._log_letter(letter)

    def _log_letter(self, letter: DeadLetter) -> None:
        """One line per dead letter, up to LETTERS_LOGGED per window: a flood of garbage is
        counted (metrics, "ingest stats"), not written line by line."""
        now = time.monotonic()
        if now - self._letters_window > LETTERS_WINDOW_S:
            self._letters_window, self._letters_logged = now, 0
        self._letters_logged += 1
        if self._letters_logged <= LETTERS_LOGGED:
            log.info(
                "dead letter",
                reason=str(letter.reason),
                correlation_id=_letter_id(letter.topic or "", letter.payload),
                topic=(letter.topic or "")[:200],
                detail=letter.detail[:200],
            )
        elif self._letters_logged == LETTERS_LOGGED + 1:
            log.info("more dead letters in this window: counted, not logged one by one")
