from datetime import UTC, datetime, timedelta

from ioc.domain.device_status import traffic_sensor_status

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def status(**over: object) -> str:
    args: dict[str, object] = {
        "now": NOW,
        "last_seen": NOW - timedelta(seconds=1),
        "online": True,
        "stuck_count": 0,
        "interval_s": 2.0,
        "alerting": False,
    }
    args.update(over)
    return traffic_sensor_status(**args).status  # type: ignore[arg-type]


def test_ok() -> None:
    assert status() == "ok"


def test_order_of_severity() -> None:
    assert status(alerting=True, online=False) == "alert"
    assert status(online=False, last_seen=None) == "offline"
    assert status(last_seen=None) == "unknown"


def test_silence_needs_a_grace_period() -> None:
    assert status(last_seen=NOW - timedelta(seconds=29)) == "ok"  # grace is at least 30 s
    assert status(last_seen=NOW - timedelta(seconds=31)) == "silent"
    assert status(interval_s=60, last_seen=NOW - timedelta(seconds=170)) == "ok"
    assert status(interval_s=60, last_seen=NOW - timedelta(seconds=181)) == "silent"


def test_silent_reason_is_readable() -> None:
    s = traffic_sensor_status(
        now=NOW,
        last_seen=NOW - timedelta(minutes=5),
        online=None,
        stuck_count=0,
        interval_s=2,
        alerting=False,
    )
    assert s.reason == "Không có dữ liệu trong 5 phút" and s.reason_en == "No reading for 5 min"


def test_stuck() -> None:
    assert status(stuck_count=9) == "ok"
    assert status(stuck_count=10) == "stuck"
