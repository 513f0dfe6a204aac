"""Sequence numbers make loss visible: the quality report counts gaps, out-of-order and late
readings exactly, from the stored rows (whichever worker stored them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ioc.config import Settings
from ioc.db import quality
from ioc.db.connect import connect

pytestmark = pytest.mark.integration


async def test_gaps_out_of_order_late_and_resets(services: Settings) -> None:
    conn = await connect(services.dsn, autocommit=True)
    dev = "ts-quality-1"
    try:
        await conn.execute(
            """INSERT INTO devices (id, kind, name, area_id, lat, lon)
               VALUES (%s, 'traffic_sensor', 'quality probe', 'dong-xoai', 11.5, 106.9)
               ON CONFLICT DO NOTHING""",
            (dev,),
        )
        await conn.execute("DELETE FROM traffic_observations WHERE device_id = %s", (dev,))
        t0 = datetime.now(UTC) - timedelta(minutes=20)
        received = t0 + timedelta(minutes=1)

        async def put(seq: int, made: datetime, arrived: datetime) -> None:
            await conn.execute(
                """INSERT INTO traffic_observations (time, device_id, seq, intensity,
                   average_speed, occupancy, interval_s, received_at)
                   VALUES (%s, %s, %s, 1, 40, 0.1, 1, %s)""",
                (made, dev, seq, arrived),
            )

        # seq 1..10 on time, except 4 and 5 lost and 8 arriving late after 9 and 10.
        for seq in (1, 2, 3, 6, 7, 9, 10):
            await put(
                seq, t0 + timedelta(seconds=seq), t0 + timedelta(seconds=seq, milliseconds=200)
            )
        await put(8, t0 + timedelta(seconds=8), received + timedelta(minutes=1))
        # The device restarts: its sequence begins again at 1.
        for seq in (1, 2, 4):
            await put(seq, t0 + timedelta(seconds=30 + seq), t0 + timedelta(seconds=30 + seq))

        (row,) = await quality.sequence_report(conn, since=timedelta(hours=1), device_ids=[dev])
        assert row == {
            "device_id": dev,
            "readings": 11,
            "gaps": 3,  # 4 and 5 before the restart, 3 after it
            "out_of_order": 1,  # 8 arrived after 9 and 10
            "late": 1,  # 8 again: stored two minutes after it was made
            "resets": 1,
        }
    finally:
        await conn.execute("DELETE FROM traffic_observations WHERE device_id = %s", (dev,))
        await conn.close()
