"""10,000 malformed or hostile payloads (generated with Hypothesis) through the real broker and
worker: every one is accounted for with the right reason, the worker stays up, memory bounded."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import psutil
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.mqtt.source import Delivery
from ingest.mqtt.worker import IngestWorker, _classify
from ioc.config import Settings
from ioc.db.observations import Availability
from ioc.domain import wire
from ioc.domain.wire import Rejected, TrafficObservation
from tests.integration.test_ingest import make_source, publish_all

pytestmark = pytest.mark.integration
KNOWN = [f"ts-{i:05d}" for i in range(1, 61)]
TOTAL = 10_000

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
FIELDS = [
    "v",
    "device_id",
    "seq",
    "observed_at",
    "intensity",
    "average_speed",
    "occupancy",
    "interval_s",
    "extra",
]


@st.composite
def message(draw: st.DrawFn) -> tuple[str, bytes]:
    device = draw(st.sampled_from([*KNOWN, "ts-99999", "x"]))
    topic = draw(
        st.sampled_from(
            [wire.observation_topic(device)] * 8
            + [wire.availability_topic(device), wire.observation_topic("other")]
        )
    )
    kind = draw(st.integers(0, 4))
    if kind == 0:  # arbitrary bytes
        body = draw(st.binary(max_size=200))
    elif kind == 1:  # arbitrary JSON
        body = json.dumps(
            draw(st.dictionaries(st.sampled_from(FIELDS), json_scalar, max_size=9))
        ).encode()
    elif kind == 2:  # hostile sizes and encodings
        body = draw(
            st.sampled_from(
                [
                    b"x" * (wire.MAX_PAYLOAD_BYTES + 1),
                    b"\xff\xfe{",
                    b"[]",
                    b"null",
                    b'"online"',
                    b"online",
                    b"OFFLINE ",
                    b"{}" * 5000,
                ]
            )
        )
    else:  # nearly valid observations with one field broken
        good = {
            "v": 1,
            "device_id": device,
            "seq": draw(st.integers(0, 10**9)),
            "observed_at": (
                datetime.now(UTC) - timedelta(seconds=draw(st.integers(-1000, 10**6)))
            ).isoformat(),
            "intensity": 3,
            "average_speed": 40.0,
            "occupancy": 0.2,
            "interval_s": 1,
        }
        key = draw(st.sampled_from(FIELDS))
        good[key] = draw(json_scalar)
        body = json.dumps(good).encode()
    return topic, body


def generate() -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []

    @settings(
        max_examples=TOTAL, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    @given(message())
    def collect(m: tuple[str, bytes]) -> None:
        out.append(m)

    collect()
    return out[:TOTAL]


async def test_hostile_payloads_are_all_accounted_for(services: Settings) -> None:
    messages = generate()
    assert len(messages) >= 5_000  # Hypothesis may stop early once it has seen enough variety
    tag = uuid.uuid4().hex[:8]
    source = make_source(services, f"test-fuzz-{tag}", f"g-{tag}")
    worker = IngestWorker(source=source, dsn=services.dsn, batch_size=500, batch_seconds=0.2)
    await source.start()
    task = asyncio.create_task(worker.run())
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    started = datetime.now(UTC)
    try:
        await asyncio.to_thread(publish_all, services, messages)
        deadline = time.monotonic() + 120
        while worker.counters["received"] - worker.counters["retained"] < len(messages):
            assert not task.done(), "worker stopped"
            assert time.monotonic() < deadline, worker.counters
            await asyncio.sleep(0.2)
    finally:
        worker.stop()
        await task
        await source.stop()
    rss_growth_mb = (proc.memory_info().rss - rss_before) / 2**20

    # The oracle: the worker's own pure classification, unit-tested separately.
    now = datetime.now(UTC)
    expected: Counter[str] = Counter()
    for topic, body in messages:
        d = Delivery(topic, body, 0, 1, 0, 0.0)
        r = _classify(d, now, set(KNOWN))
        expected[r.reason.value if isinstance(r, Rejected) else type(r).__name__] += 1
    got = Counter(
        {
            k.removeprefix("dead_letter."): v
            for k, v in worker.counters.items()
            if k.startswith("dead_letter.")
        }
    )
    rejected_expected = {
        k: v
        for k, v in expected.items()
        if k not in (TrafficObservation.__name__, Availability.__name__)
    }
    # Timestamps near the skew limits may classify differently a few seconds later.
    for reason, n in rejected_expected.items():
        if reason != "clock_skew":
            assert got[reason] == n, (reason, got, expected)
    # Valid availability states of other sensors (retained, or a Last Will from another test)
    # may arrive too; they are counted as availability, so every message is accounted for.
    assert worker.counters["received"] - worker.counters["retained"] >= len(messages)
    accounted = (
        sum(got.values())
        + worker.counters["stored"]
        + worker.counters["duplicates"]
        + worker.counters["availability"]
    )
    assert accounted == worker.counters["received"]
    with psycopg.connect(services.dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE received_at >= %s AND source = 'mqtt'",
            (started,),
        ).fetchone()
    assert row is not None and row[0] == sum(got.values())  # every rejection kept, with bytes
    assert rss_growth_mb < 150, f"memory grew {rss_growth_mb:.0f} MB"
