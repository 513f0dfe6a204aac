"""The whole centre through crashes and restarts (``ioc bench chaos``, docs/reliability.md).

The short run (about 3 minutes on 2 idle cores, 4 when they are shared) is part of the default
suite: kill -9 of an ingest worker, the alert engine, an API process and a camera worker,
PostgreSQL and Mosquitto restarts, a malformed flood and a hung camera, under steady load. It
excludes the broker's kill -9 (whose loss window is documented and measured by the long run).
The long run: ``IOC_CHAOS_LONG=1`` (``IOC_CHAOS_SECONDS`` etc. as for the bench)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def run_chaos(*args: str, timeout: float, **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "bench", "chaos", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result: dict[str, Any] = json.loads(lines[-1])
    print(lines[-1])  # shown with -s, or when an assertion fails
    return result


def assert_nothing_lost(r: dict[str, Any]) -> None:
    summary = {k: v for k, v in r.items() if k not in ("ws_clients",)}
    assert r["published"] > 0 and r["published_unacknowledged"] == 0, summary
    assert r["lost"] == 0, summary
    assert r["duplicates"] == 0, summary
    assert r["duplicate_open_alerts"] == 0, summary
    assert r["alerts_raised"] == r["alerts_expected"] > 0, summary
    assert r["alerts_extra"] == 0 and r["alerts_still_open"] == 0, summary
    assert r["ws_events_missed"] == 0, summary
    assert r["ws_events_out_of_order"] == 0 and r["ws_events_duplicated"] == 0, summary
    assert r["dead_letters"] >= r["dead_letters_expected"], summary
    assert r["unexpected_exits"] == {}, summary
    assert all(v is not None for v in r["recovery_s"].values()), summary
    assert_cameras(r)


def assert_cameras(r: dict[str, Any]) -> None:
    """Every camera leased by one live worker and still reporting; a killed worker's cameras
    taken over within the lease (plus one lease cycle and a margin); each hung camera reported
    offline, alerted once, back ok with its alert resolved; no other camera alarmed."""
    c = r["cameras"]
    assert c is not None and c["count"] > 0, r
    assert c["not_leased_once"] == [] and c["stale"] == [], c
    assert sum(c["leases"].values()) == c["count"], c
    lease = c["lease_s"]
    for t in c["takeovers"]:
        assert t["takeover_s"] is not None and t["takeover_s"] <= lease + lease / 3 + 2, c
    for h in c["hangs"]:
        assert h["detected_s"] is not None and h["reasons"], c  # no_video, or a read error
        assert h["alert_fired_s"] is not None and h["alerts"] == 1 and h["alert_resolved"], c
        assert h["events"][:1] == ["camera.offline"] and h["events"][-1:] == ["camera.ok"], c
    assert c["alerts_raised"] == c["alerts_expected"] == len(c["hangs"]), c
    assert c["alerts_extra"] == 0 and c["alerts_still_open"] == 0, c
    assert c["events_other_cameras"] == [], c


@pytest.mark.timeout(480)
def test_chaos_quick_nothing_lost() -> None:
    r = run_chaos("--quick", timeout=450, IOC_CHAOS_BROKER_KILL="0")
    assert_nothing_lost(r)
    assert r["ratio"] == 1.0
    assert r["gaps_per_device"]["missing_seqs"] == 0
    faults = {f.split(":")[0] for f in r["faults"]}
    assert faults >= {"kill_ingest", "kill_alerts", "kill_api", "restart_postgres",
                      "restart_mosquitto", "malformed_flood", "kill_camera_worker",
                      "hang_camera"}  # fmt: skip
    assert len(r["cameras"]["takeovers"]) == len(r["cameras"]["hangs"]) == 1


@pytest.mark.skipif(os.environ.get("IOC_CHAOS_LONG") != "1", reason="long run: IOC_CHAOS_LONG=1")
@pytest.mark.timeout(3600)
def test_chaos_long_nothing_lost_outside_the_broker_kill_window() -> None:
    r = run_chaos(timeout=3500)
    assert_nothing_lost(r)  # `lost` excludes only the broker kill -9 window, reported apart
