"""``ioc scenario run``: play a scenario's timeline against a centre and judge what it did.

Before the first command is sent, everything that can be wrong is checked: the file, the areas,
devices and cameras it names (as the database knows them), the broker login, the camera
simulator when the timeline needs it, and that the sensors are reporting. Then the clock
starts: actions go out at their second, and twice a second the runner reads the alert events
and dead letters recorded since the start and judges each expectation (``ioc.scenario.expect``).
The run ends when the timeline is done, ``duration_s`` has passed and every expectation that
waits for something has its answer. Afterwards it undoes what it started (faults, jams, camera
faults, the camera clock) unless told not to.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg

from ioc.config import Settings
from ioc.db.connect import connect
from ioc.db.seed import load_geography
from ioc.domain import wire
from ioc.domain.rules import Rule
from ioc.scenario import mqtt as tool_mqtt
from ioc.scenario import observe
from ioc.scenario.expect import AlertEvent, Check, DeadLetter, Verdict, judge, resolve
from ioc.scenario.load import Loaded
from ioc.scenario.plan import Action, CameraAction, MqttAction, PlanError, plan, undo
from ioc.scenario.progress import Progress

POLL_S = 0.5
READY_WAIT_S = 15.0
GRACE_S = 5.0  # after the last deadline, before giving up on a run that will not end


class ScenarioUnready(RuntimeError):
    """The centre is not in a state to run the scenario; nothing was sent."""


@dataclass
class Report:
    name: str
    title: str
    file: str
    started_at: str = ""
    duration_s: float = 0.0
    verdicts: list[Verdict] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what makes the run fail besides verdicts

    @property
    def passed(self) -> bool:
        return (
            bool(self.verdicts)
            and all(v.passed for v in self.verdicts)
            and all(a["ok"] for a in self.actions)
            and not self.errors
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "title": self.title,
            "file": self.file,
            "passed": self.passed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "expectations": [v.as_json() for v in self.verdicts],
            "actions": self.actions,
            "notes": self.notes,
            "errors": self.errors,
        }


def _rel(t: datetime, t0: datetime) -> float:
    return (t - t0).total_seconds()


class _Camera:
    """The camera simulator's control endpoint, called off the event loop."""

    def __init__(self, port: int) -> None:
        from simulators.cameras.control import SimulatorControl

        self.ctl = SimulatorControl(port, timeout=5.0)
        self.clock: tuple[float, float, float] | None = None  # (hour, monotonic, day seconds)

    async def check(self, numbers: set[int]) -> None:
        try:
            cams = await asyncio.to_thread(self.ctl.cameras)
        except (OSError, RuntimeError, ValueError, KeyError):
            raise ScenarioUnready(
                f"the timeline switches camera faults but no camera simulator answers at"
                f" {self.ctl.base}: start it (`ioc simulate cameras`) or set IOC_RTSP_CONTROL_PORT"
            ) from None
        missing = numbers - {int(c["camera"]) for c in cams}
        if missing:
            raise ScenarioUnready(f"the camera simulator has no camera {sorted(missing)}")

    async def do(self, a: CameraAction) -> None:
        if a.op == "fault":
            assert a.camera is not None and a.fault is not None
            await asyncio.to_thread(self.ctl.set_fault, a.camera, a.fault, a.on)
        elif a.op == "clear":
            await asyncio.to_thread(self.ctl.clear, a.camera)
        else:
            assert a.hour is not None
            if self.clock is None:
                before = await asyncio.to_thread(self.ctl.time_of_day)
                self.clock = (before["hour"], time.monotonic(), before["day_seconds"])
            await asyncio.to_thread(self.ctl.time_of_day, a.hour)

    async def restore_clock(self) -> None:
        """Put the day/night cycle back where it would be had the scenario not moved it."""
        if self.clock is None:
            return
        hour, since, day_s = self.clock
        now = (hour + (time.monotonic() - since) / day_s * 24) % 24
        await asyncio.to_thread(self.ctl.time_of_day, now)


async def _wait_ready(conn: psycopg.AsyncConnection[Any], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        fresh, total = await observe.recent_readings(conn, 10.0)
        if total == 0:
            raise ScenarioUnready("no traffic sensors are registered: run `ioc seed`")
        if fresh >= 0.8 * total:
            return
        if time.monotonic() > deadline:
            raise ScenarioUnready(
                f"only {fresh} of {total} sensors sent a reading in the last 10 s: is the traffic"
                " simulator (`ioc simulate traffic`) running, and `ioc ingest mqtt`?"
                " (or use --start-centre)"
            )
        await asyncio.sleep(1.0)


async def _publish(client: mqtt.Client, a: MqttAction) -> None:
    info = client.publish(a.topic, a.payload, qos=a.qos, retain=a.retain)
    deadline = time.monotonic() + 10.0
    while not info.is_published():
        if time.monotonic() > deadline:
            raise ConnectionError(f"the broker did not acknowledge {a.label!r} within 10 s")
        await asyncio.sleep(0.01)


@dataclass
class Prepared:
    """A scenario checked against the centre and ready to play: nothing sent yet."""

    loaded: Loaded
    conn: psycopg.AsyncConnection[Any]
    client: mqtt.Client
    camera: _Camera | None
    actions: list[Action]
    checks: list[Check]

    async def close(self) -> None:
        await asyncio.to_thread(tool_mqtt.close, self.client)
        await self.conn.close()


async def prepare(
    loaded: Loaded,
    settings: Settings,
    *,
    rules: Mapping[str, Rule],
    camera_port: int | None = None,
    ready_wait_s: float = READY_WAIT_S,
) -> Prepared:
    """Resolve the scenario against the centre ``settings`` point at and check the centre can
    run it. Raises :class:`~ioc.scenario.errors.InputFileError` (a name the centre does not
    have, on its line) or :class:`ScenarioUnready`; nothing is sent either way."""
    sc = loaded.scenario
    geo = load_geography(settings.areas_file)
    conn = await connect(settings.dsn, autocommit=True)
    try:
        world = await observe.world(conn, geo, settings.sim_seed)
        try:
            actions = plan(sc, world)
            checks = resolve(sc, world, rules)
        except PlanError as exc:
            raise loaded.error(exc.loc, exc.reason) from None
        camera = None
        if any(isinstance(a, CameraAction) for a in actions):
            if camera_port is None:
                from ingest.rtsp.config import camera_settings

                camera_port = camera_settings(settings).control_port
            camera = _Camera(camera_port)
            await camera.check(
                {a.camera for a in actions if isinstance(a, CameraAction) and a.camera}
            )
        if any(isinstance(a, MqttAction) and a.topic == wire.SIM_CONTROL for a in actions):
            await _wait_ready(conn, ready_wait_s)
        client = await asyncio.to_thread(tool_mqtt.connect, settings, "scenario")
    except BaseException:
        await conn.close()
        raise
    return Prepared(loaded, conn, client, camera, actions, checks)


async def play(p: Prepared, *, progress: Progress, cleanup: bool = True) -> Report:
    """Play a prepared scenario and judge it; every outcome is in the report. Closes ``p``."""
    sc = p.loaded.scenario
    report = Report(sc.name, sc.title, str(p.loaded.path))
    try:
        await _play(
            p.conn, p.client, p.camera, p.actions, p.checks, sc.duration_s, report, progress
        )
    finally:
        if cleanup:
            await _cleanup(p.client, p.camera, p.actions, report)
        await p.close()
    return report


async def run(
    loaded: Loaded,
    settings: Settings,
    *,
    rules: Mapping[str, Rule],
    progress: Progress,
    camera_port: int | None = None,
    cleanup: bool = True,
) -> Report:
    """:func:`prepare`, then :func:`play`."""
    ready = await prepare(loaded, settings, rules=rules, camera_port=camera_port)
    return await play(ready, progress=progress, cleanup=cleanup)


async def _play(
    conn: psycopg.AsyncConnection[Any],
    client: mqtt.Client,
    camera: _Camera | None,
    actions: list[Action],
    checks: list[Check],
    duration_s: float,
    report: Report,
    progress: Progress,
) -> None:
    marks = await observe.marks(conn)
    open_at_start = await observe.open_alerts(conn)
    events: list[AlertEvent] = []
    letters: list[DeadLetter] = []
    last_event, last_letter = marks.event_id, marks.dead_letter_id
    step_times: dict[int, datetime] = {}
    decided: dict[int, Verdict] = {}
    t0 = datetime.now(UTC)
    mono0 = time.monotonic()
    report.started_at = observe.utc(t0)
    planned: dict[int, float] = {}
    for a in actions:
        planned.setdefault(a.step, a.at)
    last_action = max((a.at for a in actions), default=0.0)

    def deadline(c: Check) -> float:
        start = planned.get(c.after, 0.0) if c.after is not None else 0.0
        return start + (c.within_s or c.for_s or 0.0)

    # However the centre behaves, the run ends: every deadline passed, plus a little.
    horizon = GRACE_S + max([last_action, duration_s] + [deadline(c) for c in checks])
    progress.line(f"scenario {report.name}: {report.title}")
    todo = list(actions)
    next_poll = 0.0
    while True:
        elapsed = time.monotonic() - mono0
        while todo and todo[0].at <= elapsed:
            a = todo.pop(0)
            ok, error = True, ""
            try:
                if isinstance(a, MqttAction):
                    await _publish(client, a)
                else:
                    assert camera is not None
                    await camera.do(a)
            except (OSError, RuntimeError, ValueError) as exc:
                ok, error = False, str(exc)[:200]
            when = datetime.now(UTC)
            step_times.setdefault(a.step, when)
            at = _rel(when, t0)
            report.actions.append({"t": round(at, 3), "step": a.step, "action": a.label, "ok": ok}
                                  | ({"error": error} if error else {}))  # fmt: skip
            progress.line(f"  t+{at:6.1f} s  → {a.label}" + (f"  FAILED: {error}" if error else ""))
        elapsed = time.monotonic() - mono0
        if elapsed < next_poll and todo:
            await asyncio.sleep(min(POLL_S, max(todo[0].at - elapsed, 0.0)))
            continue
        next_poll = elapsed + POLL_S
        new_events = await observe.alert_events(conn, last_event)
        new_letters = await observe.dead_letters(conn, last_letter)
        events += new_events
        letters += new_letters
        last_event = new_events[-1].id if new_events else last_event
        last_letter = new_letters[-1].id if new_letters else last_letter
        now = datetime.now(UTC)
        done_playing = not todo and elapsed >= duration_s
        verdicts = [
            decided.get(c.index) or judge(
                c, t0=t0, now=now, finished=False, step_times=step_times, events=events,
                dead_letters=letters, open_at_start=open_at_start,
            )
            for c in checks
        ]  # fmt: skip
        for v in verdicts:
            if v.passed is not None and v.index not in decided:
                decided[v.index] = v  # a failure is final; a no_alert passes when its window ends
                _say(progress, v, _rel(now, t0))
        # Still open: what waits for an alert or dead letter, and no_alert windows of fixed
        # length; a no_alert for the whole run is judged at the end.
        waiting = [
            c for c in checks
            if c.index not in decided and not (c.kind == "no_alert" and c.for_s is None)
        ]  # fmt: skip
        if (done_playing and not waiting) or elapsed > horizon:
            break
        await asyncio.sleep(POLL_S if not todo else min(POLL_S, max(todo[0].at - elapsed, 0.0)))
    end = datetime.now(UTC)
    report.duration_s = _rel(end, t0)
    report.verdicts = []
    for c in checks:
        v = decided.get(c.index) or judge(
            c, t0=t0, now=end, finished=True, step_times=step_times, events=events,
            dead_letters=letters, open_at_start=open_at_start,
        )  # fmt: skip
        if v.passed is None:
            v.passed, v.detail = False, v.detail or "not decided when the scenario ended"
        if c.kind == "no_alert" and c.index not in decided:
            _say(progress, v, report.duration_s)
        report.verdicts.append(v)


def _say(progress: Progress, v: Verdict, at: float) -> None:
    word = "PASS" if v.passed else "FAIL"
    took = f" ({v.measured_s:.1f} s)" if v.measured_s is not None and v.kind != "no_alert" else ""
    extra = f": {v.detail}" if not v.passed and v.detail else ""
    progress.line(f"  t+{at:6.1f} s  {word} {v.label}{took}{extra}")


async def _cleanup(
    client: mqtt.Client, camera: _Camera | None, actions: list[Action], report: Report
) -> None:
    try:
        for a in undo(actions):
            if isinstance(a, MqttAction):
                await _publish(client, a)
            elif camera is not None:
                await camera.do(a)
        if camera is not None:
            await camera.restore_clock()
    except (OSError, RuntimeError, ValueError) as exc:
        report.notes.append(f"cleaning up failed: {exc}")
