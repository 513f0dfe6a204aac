"""kill -9 of the alert engine while it is busy, then a restart: no alert opened twice, no
transition recorded twice, and every alert's events form a valid history."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ioc.config import Settings
from tests.conftest import env_for

pytestmark = pytest.mark.integration

RULES = """rules:
  - id: t.restart-{tag}
    title: "Ùn tắc"
    metric: average_speed
    op: below
    threshold: 15
    clear: 25
    window_s: 1
    for_s: 0
    severity: major
    flap_changes: 100000
"""


def test_engine_killed_mid_work_leaves_a_consistent_history(
    services: Settings, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    rule = f"t.restart-{tag}"
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.format(tag=tag))
    devices = [f"r{i}-{tag}" for i in range(20)]
    with psycopg.connect(services.dsn, autocommit=True) as conn:
        for d in devices:
            conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon) "
                "VALUES (%s, 'traffic_sensor', %s, 'dong-xoai', 11.5, 106.9)",
                (d, d),
            )
    env = env_for(services, IOC_RULES_FILE=str(rules), IOC_ALERTS_INTERVAL_SECONDS="0.2")

    def engine() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "ioc.cli", "alerts"],
            env=env,
            stdout=(tmp_path / "engine.log").open("ab"),
            stderr=subprocess.STDOUT,
        )

    def count(conn: psycopg.Connection[Any]) -> int:
        row = conn.execute("SELECT count(*) FROM alerts WHERE rule_id = %s", (rule,)).fetchone()
        return int(row[0]) if row else 0

    proc = engine()
    seq = 0
    try:
        with psycopg.connect(services.dsn, autocommit=True) as conn:
            # Feed congested/free readings until the engine is demonstrably at work, kill it,
            # restart it, and go on until the new one has cycled every device again. Driven by
            # what the engine did, not by the clock: process start-up on a busy machine varies.
            deadline = time.monotonic() + 120
            before_kill: int | None = None
            restarted_at: float | None = None
            while time.monotonic() < deadline:
                seq += 1
                slow = seq % 4 < 2  # congested for a second, free for a second, ...
                for d in devices:
                    conn.execute(
                        "INSERT INTO traffic_observations (time, device_id, seq, intensity,"
                        " average_speed, occupancy, interval_s) VALUES (%s, %s, %s, 3, %s, 0.5, 1)",
                        (datetime.now(UTC), d, seq, 5.0 if slow else 60.0),
                    )
                n = count(conn)
                if before_kill is None and n >= len(devices):  # busy: mid-cycle
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(10)
                    before_kill = n
                    proc = engine()
                    restarted_at = time.monotonic()
                elif before_kill is not None and n >= before_kill + 2 * len(devices):
                    break  # the restarted engine opened a full round and more
                time.sleep(0.5)
            assert restarted_at is not None, "the first engine never opened an alert"
            time.sleep(2)
            opens = conn.execute(
                "SELECT device_id, count(*) FROM alerts WHERE rule_id = %s "
                "AND status <> 'resolved' GROUP BY device_id HAVING count(*) > 1",
                (rule,),
            ).fetchall()
            assert opens == []
            histories = conn.execute(
                "SELECT a.id, array_agg(e.kind ORDER BY e.id) FROM alerts a "
                "JOIN events e ON e.alert_id = a.id WHERE a.rule_id = %s GROUP BY a.id",
                (rule,),
            ).fetchall()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    assert before_kill is not None
    assert len(histories) >= before_kill + 2 * len(devices), "the restarted engine did not cycle"
    for alert_id, kinds in histories:
        assert kinds in (["alert.firing"], ["alert.firing", "alert.resolved"]), (alert_id, kinds)
