"""Liveness/readiness checks, their HTTP server, and the small pure parts of the centre's
self-observation (request ids, correlation ids, metric helpers, test-safe ports)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client import REGISTRY

from ingest.mqtt.worker import _letter_id
from ingest.rtsp import metrics as rtsp_metrics
from ioc.alerts import metrics as alert_metrics
from ioc.api.instrument import request_id
from ioc.bench.common import free_port
from ioc.config import Settings
from ioc.domain import wire
from ioc.observe import Observer, serving


def test_recent_checks_fail_when_never_or_too_old() -> None:
    obs = Observer("t")
    marks: dict[str, float | None] = {"db": None}
    obs.recent("database", lambda: marks["db"], max_age_s=5)
    obs.condition("broker", lambda: True)
    ok, body = obs.readiness()
    assert not ok and body["checks"]["database"] == {"ok": False, "age_s": None, "max_age_s": 5}
    marks["db"] = time.monotonic() - 1
    ok, body = obs.readiness()
    assert ok and body["status"] == "ready" and body["checks"]["broker"] == {"ok": True}
    marks["db"] = time.monotonic() - 6
    assert obs.readiness()[0] is False


def test_a_failing_probe_is_not_ready_and_does_not_raise() -> None:
    obs = Observer("t")
    obs.condition("boom", lambda: 1 / 0 > 0)
    ok, body = obs.readiness()
    assert not ok and body["checks"]["boom"] == {"ok": False, "error": "ZeroDivisionError"}


def test_liveness_needs_a_recent_beat() -> None:
    obs = Observer("t", stall_s=2)
    assert obs.liveness()[0] is False  # never beaten
    obs.beat_at = time.monotonic()
    assert obs.liveness()[0] is True
    obs.beat_at = time.monotonic() - 3
    ok, body = obs.liveness()
    assert not ok and body["status"] == "stalled"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_server_answers_metrics_healthz_and_readyz() -> None:
    port = free_port()
    ready = {"db": False}
    async with serving("unit", port, "127.0.0.1", "IOC_TEST_PORT") as obs:
        obs.condition("database", lambda: ready["db"])
        await asyncio.sleep(0.05)  # let the beat task run once
        base = f"http://127.0.0.1:{port}"
        status, body = await asyncio.to_thread(_get, base + "/healthz")
        assert status == 200 and json.loads(body)["status"] == "alive"
        status, body = await asyncio.to_thread(_get, base + "/readyz")
        assert status == 503 and json.loads(body)["checks"]["database"]["ok"] is False
        ready["db"] = True
        assert (await asyncio.to_thread(_get, base + "/readyz"))[0] == 200
        status, text = await asyncio.to_thread(_get, base + "/metrics")
        assert status == 200 and "ioc_alerts_open" in text
        assert (await asyncio.to_thread(_get, base + "/elsewhere"))[0] == 404
    with pytest.raises(OSError):  # stopped: nothing listens any more
        await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/healthz")


async def test_a_taken_port_says_which_setting_to_change() -> None:
    from ioc.services import ServiceError

    port = free_port()
    async with serving("one", port, "127.0.0.1", "IOC_X_PORT"):
        with pytest.raises(ServiceError, match="IOC_X_PORT"):
            async with serving("two", port, "127.0.0.1", "IOC_X_PORT"):
                pass


async def test_port_zero_serves_nothing_but_checks_still_work() -> None:
    async with serving("off", 0, "127.0.0.1", "IOC_X_PORT") as obs:
        obs.condition("always", lambda: True)
        assert obs.url is None and obs.readiness()[0] is True


def test_request_ids_are_kept_when_sane_and_replaced_otherwise() -> None:
    assert request_id("op-7f3a.42") == "op-7f3a.42"
    assert request_id("trace/abc:1@node") == "trace/abc:1@node"
    for bad in (None, "", "two words", "x" * 129, 'inject"quote', "-leading", "line\nbreak"):
        made = request_id(bad)
        assert made != bad and len(made) == 32


def test_correlation_id_of_readings_and_rejected_ones() -> None:
    assert wire.correlation_id("ts-00001", 42) == "ts-00001/42"
    topic = wire.observation_topic("ts-00001")
    assert _letter_id(topic, b'{"v": 9, "seq": 42}') == "ts-00001/42"
    for payload in (b"{oops", b"[1]", b'{"seq": "42"}', b'{"seq": true}', b"[" * 5000):
        assert _letter_id(topic, payload) is None
    assert _letter_id("not/a/traffic/topic", b'{"seq": 1}') is None


def test_metrics_ports_are_off_in_tests_unless_set() -> None:
    s = Settings(environment="test")
    assert (s.ingest_metrics_port, s.rtsp_metrics_port, s.alerts_metrics_port,
            s.rollups_metrics_port) == (0, 0, 0, 0)  # fmt: skip
    assert Settings(environment="test", alerts_metrics_port=9555).alerts_metrics_port == 9555
    dev = Settings(environment="development")
    assert (dev.ingest_metrics_port, dev.rtsp_metrics_port, dev.alerts_metrics_port,
            dev.rollups_metrics_port) == (9101, 9102, 9103, 9104)  # fmt: skip


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_per_state_gauges_zero_what_is_gone() -> None:
    rtsp_metrics.count_statuses(["ok", "ok", "frozen", "weird"])
    assert _value("ioc_camera_status", status="ok") == 2
    assert _value("ioc_camera_status", status="frozen") == 1
    assert _value("ioc_camera_status", status="unknown") == 1
    rtsp_metrics.count_statuses([])
    assert _value("ioc_camera_status", status="ok") == 0
    alert_metrics.set_open({("major", "firing"): 3})
    assert _value("ioc_alerts_open", severity="major", status="firing") == 3
    alert_metrics.set_open({})
    assert _value("ioc_alerts_open", severity="major", status="firing") == 0
    assert _value("ioc_alerts_open", severity="critical", status="pending") == 0
