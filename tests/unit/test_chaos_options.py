"""``ioc bench chaos``'s options: flags through ``ioc bench``, the IOC_CHAOS_* fallbacks, the
modes' defaults, refusals that name the option; the other benches keep only ``--quick``."""

from __future__ import annotations

import pytest

from ioc.bench.chaos import schedule
from ioc.bench.chaos_options import CAMERA_FAULTS, given, resolve
from ioc.cli import build_parser


def parse(*argv: str) -> dict[str, object]:
    args = build_parser().parse_args(["bench", *argv])
    return {"name": args.name, "quick": args.quick, **given(args)}


def test_ioc_bench_chaos_takes_its_options() -> None:
    got = parse("chaos", "--quick", "--seconds", "30", "--rate", "50", "--seed", "7",
                "--subscription", "shared", "--no-broker-kill", "--cameras", "2",
                "--camera-lease", "5", "--faults", "hang_camera,kill_api")  # fmt: skip
    assert got == {
        "name": "chaos", "quick": True, "seconds": 30.0, "rate": 50.0, "seed": 7,
        "subscription": "shared", "broker_kill": False, "cameras": 2, "camera_lease": 5.0,
        "faults": "hang_camera,kill_api",
    }  # fmt: skip
    opts = resolve(True, {k: v for k, v in got.items() if k not in ("name", "quick")}, env={})
    assert opts.faults == ("hang_camera", "kill_api") and opts.camera_lease_s == 5.0


def test_other_benches_take_only_quick() -> None:
    assert parse("ingest", "--quick") == {"name": "ingest", "quick": True}
    assert parse("cameras") == {"name": "cameras", "quick": False}
    with pytest.raises(SystemExit):
        parse("ingest", "--seconds", "5")


def test_flags_win_over_environment_over_defaults() -> None:
    env = {"IOC_CHAOS_SECONDS": "40", "IOC_CHAOS_RATE": "300", "IOC_CHAOS_BROKER_KILL": "1"}
    o = resolve(True, {"seconds": 20.0}, env=env)
    assert (o.seconds, o.rate, o.broker_kill, o.seed, o.subscription) == (20, 300, True, 1, "plain")
    quick, long = resolve(True, env={}), resolve(False, env={})
    assert (quick.seconds, quick.rate, quick.broker_kill, quick.cameras) == (90, 200, False, 4)
    assert (long.seconds, long.rate, long.broker_kill) == (600, 500, True)
    assert resolve(False, env={"IOC_CHAOS_BROKER_KILL": "0"}).broker_kill is False


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"faults": "kill_api,nope"}, "unknown fault 'nope'"),
        ({"subscription": "both"}, "--subscription"),
        ({"rate": 0.0}, "--rate"),
        ({"cameras": 0, "faults": "hang_camera"}, "camera faults need"),
        ({"camera_lease": 1.0}, "--camera-lease"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve(True, options, env={})


def test_schedules() -> None:
    import random

    quick = schedule(resolve(True, env={}), random.Random(1))
    assert set(CAMERA_FAULTS) <= set(quick) and "kill9_mosquitto" not in quick
    no_cams = schedule(resolve(True, {"cameras": 0}, env={}), random.Random(1))
    assert not set(CAMERA_FAULTS) & set(no_cams) and len(no_cams) == len(quick) - 2
    long = schedule(resolve(False, env={}), random.Random(1))
    assert long.count("hang_camera") == 2 and "kill9_mosquitto_backlog" in long
    given_order = schedule(resolve(True, {"faults": "hang_camera,kill_api"}, env={}), None)  # type: ignore[arg-type]
    assert given_order == ["hang_camera", "kill_api"]
