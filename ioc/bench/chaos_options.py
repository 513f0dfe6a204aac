"""The options of ``ioc bench chaos``: one definition for ``ioc bench chaos --seconds N ...``
(``ioc/cli.py``) and ``python -m ioc.bench.chaos``, with the ``IOC_CHAOS_*`` environment
variables as a fallback (a flag wins over its variable). Light on imports: the CLI builds its
parser from here on every ``ioc`` call."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

SUBSCRIPTIONS = ("plain", "shared")
# Every fault the harness knows; ``--faults`` picks some of them (in the given order).
FAULTS = (
    "kill_ingest",
    "kill_alerts",
    "kill_api",
    "restart_postgres",
    "restart_mosquitto",
    "malformed_flood",
    "freeze_ws",
    "kill9_mosquitto",
    "kill9_mosquitto_backlog",
    "kill_camera_worker",
    "hang_camera",
)
CAMERA_FAULTS = ("kill_camera_worker", "hang_camera")


@dataclass(frozen=True)
class ChaosOptions:
    quick: bool
    seconds: float
    seed: int
    rate: float  # readings a second
    subscription: str  # plain | shared
    broker_kill: bool
    cameras: int  # simulated cameras (0: no cameras, no camera workers, no camera faults)
    camera_lease_s: float
    faults: tuple[str, ...] | None = None  # None: the seeded schedule of the mode


def add_arguments(p: argparse.ArgumentParser | Any) -> None:
    """The chaos options on ``p`` (a parser or an argument group); every default is None so
    that an absent flag falls back to its environment variable, then to the mode's default."""
    p.add_argument("--seconds", type=float, help="seconds of faults (IOC_CHAOS_SECONDS; "
                   "quick 90, long 600)")  # fmt: skip
    p.add_argument("--seed", type=int, help="the fault order's seed (IOC_CHAOS_SEED; 1)")
    p.add_argument("--rate", type=float, help="readings a second (IOC_CHAOS_RATE; quick 200, "
                   "long 500)")  # fmt: skip
    p.add_argument("--subscription", choices=SUBSCRIPTIONS,
                   help="the ingest pair's MQTT subscription (IOC_CHAOS_SUBSCRIPTION; plain)")  # fmt: skip
    p.add_argument("--broker-kill", action=argparse.BooleanOptionalAction, default=None,
                   help="add the broker kill -9 faults (IOC_CHAOS_BROKER_KILL=1; on in the "
                   "long run)")  # fmt: skip
    p.add_argument("--cameras", type=int, help="simulated cameras, 0 for none "
                   "(IOC_CHAOS_CAMERAS; 4)")  # fmt: skip
    p.add_argument("--camera-lease", type=float, dest="camera_lease",
                   help="the camera workers' lease, seconds (IOC_CHAOS_CAMERA_LEASE; 8)")  # fmt: skip
    p.add_argument("--faults", help="comma-separated faults to run in this order instead of "
                   f"the seeded schedule (IOC_CHAOS_FAULTS): {', '.join(FAULTS)}")  # fmt: skip


OPTION_NAMES = (
    "seconds", "seed", "rate", "subscription", "broker_kill", "cameras", "camera_lease", "faults",
)  # fmt: skip


def given(ns: argparse.Namespace) -> dict[str, Any]:
    """The chaos options set on the command line (for ``ioc bench chaos``'s ``main``)."""
    return {k: getattr(ns, k) for k in OPTION_NAMES if getattr(ns, k, None) is not None}


def resolve(
    quick: bool, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> ChaosOptions:
    """Flags first, then ``IOC_CHAOS_*``, then the mode's default. Raises ValueError with the
    option's name when a value is unusable."""
    o = dict(options or {})
    e = os.environ if env is None else env

    def pick(name: str, default: Any) -> Any:
        if o.get(name) is not None:
            return o[name]
        raw = e.get(f"IOC_CHAOS_{name.upper()}", "")
        return raw if raw.strip() else default

    def number(name: str, default: float, kind: Callable[[Any], Any] = float) -> Any:
        value = pick(name, default)
        try:
            return kind(value)
        except ValueError:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a number, not {value!r}"
            ) from None

    broker = pick("broker_kill", not quick)
    if isinstance(broker, str):
        broker = broker.strip().lower() in ("1", "true", "yes", "on")
    subscription = str(pick("subscription", "plain"))
    if subscription not in SUBSCRIPTIONS:
        raise ValueError(f"--subscription must be one of {', '.join(SUBSCRIPTIONS)}")
    faults_raw = pick("faults", "")
    faults = tuple(f.strip() for f in str(faults_raw).split(",") if f.strip()) or None
    unknown = [f for f in faults or () if f not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; one of {', '.join(FAULTS)}")
    out = ChaosOptions(
        quick=quick,
        seconds=number("seconds", 90 if quick else 600),
        seed=number("seed", 1, int),
        rate=number("rate", 200 if quick else 500),
        subscription=subscription,
        broker_kill=bool(broker),
        cameras=number("cameras", 4, int),
        camera_lease_s=number("camera_lease", 8.0),
        faults=faults,
    )
    if out.seconds <= 0 or out.rate <= 0 or out.cameras < 0 or out.camera_lease_s < 3:
        raise ValueError(
            "--seconds and --rate must be more than 0, --cameras 0 or more, --camera-lease 3 s "
            "or more"
        )
    if out.cameras == 0 and any(f in CAMERA_FAULTS for f in faults or ()):
        raise ValueError("camera faults need --cameras 1 or more")
    return out
