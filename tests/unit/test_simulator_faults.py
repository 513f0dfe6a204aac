"""Every fault's effect on what a simulated sensor puts on the wire (engine level, no broker)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime

import pytest

from ioc.config import PROJECT_ROOT
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.fleet import make_fleet
from simulators.traffic import parse_command
from simulators.traffic_engine import (
    Action,
    EngineConfig,
    GoOffline,
    GoOnline,
    Publish,
    TrafficEngine,
)
from simulators.traffic_faults import FaultKind, format_time, render
from simulators.traffic_model import Reading

FLEET = make_fleet(load_geography(PROJECT_ROOT / "config/areas/binh-phuoc.yaml"), 40, 58)
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC).timestamp()  # 09:00 in Vietnam
DEV = "ts-00003"


def engine(**config: object) -> TrafficEngine:
    e = TrafficEngine(FLEET, EngineConfig(interval_s=1.0, **config))  # type: ignore[arg-type]
    e.start(T0)
    return e


def run(e: TrafficEngine, until: float, step: float = 0.1, start: float = T0) -> list[Action]:
    """Advance in small steps, as the real loop does (a big jump counts as lag and skips)."""
    out: list[Action] = []
    t = start
    while t <= until:
        out.extend(e.advance(t))
        t = round(t + step, 3)
    return out


def published(actions: list[Action], device: str = DEV) -> list[Publish]:
    return [a for a in actions if isinstance(a, Publish) and FLEET[a.index].id == device]


def parsed(p: Publish) -> wire.TrafficObservation | wire.Rejected:
    return wire.parse_observation(
        p.topic, p.payload, now=datetime.fromtimestamp(p.observed_at, UTC)
    )


def fault(kind: str, duration: float = 5.0, **extra: object) -> wire.SimFault:
    return wire.SimFault(action="fault", kind=kind, device_ids=[DEV], duration_s=duration, **extra)  # type: ignore[arg-type]


def test_healthy_readings_are_valid_once_per_interval_with_rising_seq() -> None:
    actions = run(engine(), T0 + 20)
    for device in (s.id for s in FLEET):
        mine = published(actions, device)
        assert len(mine) in (20, 21)
        obs = [parsed(p) for p in mine]
        assert all(isinstance(o, wire.TrafficObservation) for o in obs), obs[0]
        assert [o.seq for o in obs] == list(range(len(obs)))  # type: ignore[union-attr]
        gaps = {
            round(b.observed_at - a.observed_at, 3) for a, b in zip(mine, mine[1:], strict=False)
        }
        assert gaps == {1.0}
    stamps = Counter(json.loads(a.payload)["observed_at"][-6:] == "+07:00" for a in actions)  # type: ignore[union-attr]
    assert stamps[True] and stamps[False]  # some sensors keep local time; both are valid


def test_same_seed_and_clock_give_the_same_bytes() -> None:
    a, b = run(engine(fault_rate=0.05), T0 + 30), run(engine(fault_rate=0.05), T0 + 30)
    assert a == b
    assert run(engine(seed=59, fault_rate=0.05), T0 + 30) != a


def test_silent_sensor_sends_nothing_and_resumes_without_a_gap() -> None:
    e = engine()
    before = published(run(e, T0 + 3.0))
    e.control(fault("silent", 5), T0 + 3.0)
    during = published(run(e, T0 + 8.0, start=T0 + 3.0))
    after = published(run(e, T0 + 12.0, start=T0 + 8.1))
    assert before and not during and after
    seqs = [json.loads(p.payload)["seq"] for p in before + after]
    assert seqs == list(range(len(seqs)))


def test_stuck_sensor_repeats_its_values_while_time_and_seq_move_on() -> None:
    e = engine()
    run(e, T0 + 2.0)
    e.control(fault("stuck", 6), T0 + 2.0)
    during = [json.loads(p.payload) for p in published(run(e, T0 + 8.0, start=T0 + 2.0))]
    assert len(during) >= 5
    values = {(d["intensity"], d["average_speed"], d["occupancy"]) for d in during}
    assert len(values) == 1
    assert len({d["seq"] for d in during}) == len({d["observed_at"] for d in during}) == len(during)
    after = [json.loads(p.payload) for p in published(run(e, T0 + 14.0, start=T0 + 8.1))]
    assert len({(d["average_speed"], d["occupancy"]) for d in after}) > 1


def test_out_of_range_values_are_rejected_as_out_of_range() -> None:
    e = engine()
    e.control(fault("out_of_range", 30), T0)
    bad = published(run(e, T0 + 30, start=T0))
    assert {parsed(p).reason for p in bad} == {wire.Reason.OUT_OF_RANGE}  # type: ignore[union-attr]
    seen = {(k, v) for p in bad for k, v in json.loads(p.payload).items()}
    assert ("occupancy", 1.7) in seen and ("average_speed", -12.5) in seen
    assert ("intensity", -3) in seen


def test_clock_skew_shifts_observed_at() -> None:
    e = engine()
    e.control(fault("clock_skew", 3, skew_s=600), T0)
    ahead = published(run(e, T0 + 2, start=T0))[0]
    stamp = datetime.fromisoformat(json.loads(ahead.payload)["observed_at"]).timestamp()
    assert stamp == pytest.approx(ahead.observed_at + 600)
    assert parsed(ahead).reason is wire.Reason.CLOCK_SKEW  # type: ignore[union-attr]
    e.control(fault("clock_skew", 3, skew_s=-900), T0 + 5)
    behind = published(run(e, T0 + 7, start=T0 + 5))[-1]
    late = parsed(behind)
    assert isinstance(late, wire.TrafficObservation)  # late but valid: stored, counted late
    assert late.observed_at.timestamp() == pytest.approx(behind.observed_at - 900)


def test_malformed_json_in_all_its_forms() -> None:
    values = Reading(intensity=3, average_speed=41.5, occupancy=0.12)
    kinds = [FaultKind.MALFORMED_JSON]
    bodies = [
        render(
            device_id=DEV,
            seq=1,
            t=T0,
            values=values,
            interval_s=1,
            local_time=False,
            kinds=kinds,
            variant=v,
        )[0]
        for v in (0.1, 0.5, 0.9)
    ]
    assert len(set(bodies)) == 3
    topic = wire.observation_topic(DEV)
    now = datetime.fromtimestamp(T0, UTC)
    for body in bodies:
        result = wire.parse_observation(topic, body, now=now)
        assert isinstance(result, wire.Rejected) and result.reason is wire.Reason.BAD_JSON


def test_wrong_schema_version_sends_v2() -> None:
    e = engine()
    e.control(fault("wrong_version", 3), T0)
    p = published(run(e, T0 + 2, start=T0))[0]
    assert json.loads(p.payload)["v"] == 2
    assert parsed(p).reason is wire.Reason.UNSUPPORTED_VERSION  # type: ignore[union-attr]


def test_duplicate_publishes_the_same_bytes_twice() -> None:
    e = engine()
    e.control(fault("duplicate", 1.5), T0)
    p = published(run(e, T0 + 1.5, start=T0))
    assert len(p) == 2 and p[0].payload == p[1].payload
    assert isinstance(parsed(p[0]), wire.TrafficObservation)


def test_store_and_forward_drops_the_link_keeps_readings_and_reconnects() -> None:
    e = engine()
    before = published(run(e, T0 + 3))
    e.control(fault("store_and_forward", 5), T0 + 3)
    actions = [a for a in run(e, T0 + 12, start=T0 + 3) if a.index == 2]
    kinds = [type(a).__name__ for a in actions]
    assert kinds[0] == "GoOffline" and "GoOnline" in kinds
    kept = actions[1 : kinds.index("GoOnline")]
    assert len(kept) >= 4 and all(isinstance(a, Publish) for a in kept)
    seqs = [json.loads(a.payload)["seq"] for a in before + kept]  # type: ignore[union-attr]
    assert seqs == list(range(len(seqs)))  # original sequence, no gap
    for a in kept:  # original timestamps, not the replay time
        assert isinstance(a, Publish)
        stamp = json.loads(a.payload)["observed_at"]
        assert stamp in (format_time(a.observed_at, False), format_time(a.observed_at, True))
        assert a.observed_at < T0 + 8.5
    assert isinstance(actions[0], GoOffline) and any(isinstance(a, GoOnline) for a in actions)


def test_clear_faults_ends_them() -> None:
    e = engine()
    e.control(fault("silent", 600), T0)
    assert not published(run(e, T0 + 3, start=T0))
    e.control(wire.SimFault(action="clear_faults"), T0 + 3)
    assert published(run(e, T0 + 6, start=T0 + 3))


def test_random_faults_show_every_kind_at_about_the_rate() -> None:
    e = engine(fault_rate=0.02)
    actions = run(e, T0 + 300, step=0.5)
    payloads = [a for a in actions if isinstance(a, Publish)]
    reasons = Counter(getattr(parsed(p), "reason", "ok") for p in payloads)
    assert reasons["ok"] > 0.8 * len(payloads)
    for reason in ("out_of_range", "bad_json", "unsupported_version", "clock_skew"):
        assert reasons[wire.Reason(reason)] > 0, reasons
    assert any(isinstance(a, GoOffline) for a in actions)
    per_device = Counter(a.payload for a in payloads)
    assert any(n == 2 for n in per_device.values())  # duplicates
    only = engine(fault_rate=0.05, fault_kinds=(FaultKind.WRONG_VERSION,))
    versions = {json.loads(a.payload)["v"] for a in run(only, T0 + 60) if isinstance(a, Publish)}
    assert versions == {1, 2}


def test_control_messages_parse_into_congestion_or_fault_commands() -> None:
    assert isinstance(parse_command(b'{"action": "congestion", "area_id": "x"}'), wire.SimControl)
    cmd = parse_command(b'{"action": "fault", "kind": "stuck", "device_ids": ["ts-00001"]}')
    assert isinstance(cmd, wire.SimFault) and cmd.kind == "stuck" and cmd.duration_s == 60
    for bad in (
        b'{"action": "fault", "device_ids": ["ts-00001"]}',  # no kind
        b'{"action": "fault", "kind": "melted"}',
        b'{"action": "congestion", "colour": "red"}',
        b"not json",
    ):
        with pytest.raises(ValueError):
            parse_command(bad)
    assert set(wire.SIM_FAULT_KINDS) == {k.value for k in FaultKind}


def test_cli_takes_fault_options_and_refuses_unknown_kinds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ioc.cli import build_parser

    args = build_parser().parse_args(
        ["simulate", "traffic", "--fault-rate", "0.01", "--fault-kind", "stuck", "--seed", "7"]
    )
    assert (args.fault_rate, args.fault_kind, args.seed) == (0.01, ["stuck"], 7)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["simulate", "fault", "--kind", "melted", "--device", "x"])
    assert "invalid choice" in capsys.readouterr().err
