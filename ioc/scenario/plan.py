"""From a scenario's timeline to the exact commands to send, and when. Pure: no I/O.

The :class:`World` (areas, registered devices, the demo fleet's roads, camera numbers) is read
from the database by the runner; here steps become :class:`MqttAction` (a simulator command or a
raw message) and :class:`CameraAction` (a call to the camera simulator's control endpoint), each
at its second of the scenario. Anything that cannot be resolved (an area without sensors, a
device that is not registered, a camera number nobody serves) is a problem of the file, reported
before anything is sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal

from ioc.domain import wire
from ioc.scenario import schema as s


@dataclass(frozen=True, slots=True)
class Device:
    id: str
    kind: str
    area_id: str
    parent_id: str | None = None
    camera: int | None = None  # camera N serves /camN
    road: str | None = None  # demo fleet only


@dataclass
class World:
    """What the scenario can point at, as the centre knows it."""

    parents: dict[str, str | None]  # area id -> parent area id
    devices: dict[str, Device]
    _children: dict[str | None, list[str]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for area, parent in self.parents.items():
            self._children.setdefault(parent, []).append(area)

    def subtree(self, area: str) -> set[str]:
        out, todo = set(), [area]
        while todo:
            a = todo.pop()
            if a in self.parents and a not in out:
                out.add(a)
                todo.extend(self._children.get(a, []))
        return out

    def is_leaf(self, area: str) -> bool:
        return area in self.parents and not self._children.get(area)

    def in_areas(self, areas: Iterable[str], kind: str | None = None) -> list[str]:
        within = set().union(*(self.subtree(a) for a in areas))
        return sorted(
            d.id for d in self.devices.values() if d.area_id in within and kind in (None, d.kind)
        )

    def camera_device(self, number: int) -> str | None:
        for d in self.devices.values():
            if d.camera == number:
                return d.id
        return None


@dataclass(frozen=True, slots=True)
class MqttAction:
    at: float
    step: int
    label: str
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True, slots=True)
class CameraAction:
    at: float
    step: int
    label: str
    op: Literal["fault", "clear", "time"]
    camera: int | None = None
    fault: str | None = None
    on: bool = True
    hour: float | None = None


Action = MqttAction | CameraAction


class PlanError(ValueError):
    def __init__(self, loc: tuple[str | int, ...], reason: str) -> None:
        self.loc = loc
        self.reason = reason
        super().__init__(reason)


def _sensors(world: World, step: s._Target, i: int) -> tuple[str | None, list[str] | None]:
    """(area_id, device_ids) for a simulator command: a leaf area is named as such (the
    simulator knows its sensors); anything else is sent as the list of sensor ids."""
    listed = step.device_list()
    for k, dev in enumerate(listed):
        d = world.devices.get(dev)
        if d is None or d.kind != "traffic_sensor":
            where = (
                ("timeline", i, "device") if step.device == dev else ("timeline", i, "devices", k)
            )
            raise PlanError(where, f"{dev!r} is not a registered traffic sensor")
    if not step.area:
        return None, listed
    if step.area not in world.parents:
        raise PlanError(("timeline", i, "area"), f"area {step.area!r} is not in the database")
    if not step.road and world.is_leaf(step.area) and not listed:
        return step.area, None
    found = [
        d for d in world.in_areas([step.area], "traffic_sensor")
        if not step.road or world.devices[d].road == step.road
    ]  # fmt: skip
    if not found:
        along = f" along {step.road}" if step.road else ""
        raise PlanError(("timeline", i, "area"), f"no traffic sensors in {step.area}{along}")
    return None, sorted(set(found) | set(listed))


def _describe(step: s._Target, area: str | None, devices: list[str] | None) -> str:
    """For the log: what the step named, and what that came to."""
    named = (step.area or "") + (f" along {step.road}" if step.road else "")
    if area:
        return area
    ids = ", ".join(devices or []) if len(devices or []) <= 3 else f"{len(devices or [])} sensors"
    if named:
        return f"{named}: {ids}"
    return ids or "every sensor"


def _mqtt(at: float, i: int, label: str, model: wire.SimControl | wire.SimFault) -> MqttAction:
    return MqttAction(at, i, label, wire.SIM_CONTROL, model.model_dump_json().encode())


def _expand(step: s.Step, i: int, world: World) -> list[Action]:
    at = step.at
    if isinstance(step, s.Congestion):
        area, devs = _sensors(world, step, i)
        cmd = wire.SimControl(
            action="congestion", area_id=area, device_ids=devs,
            speed_kmh=step.speed_kmh, duration_s=step.duration_s,
        )  # fmt: skip
        return [_mqtt(at, i, f"congestion on {_describe(step, area, devs)}", cmd)]
    if isinstance(step, s.ClearCongestion):
        area, devs = _sensors(world, step, i) if step.has_target() else (None, None)
        cmd = wire.SimControl(action="clear", area_id=area, device_ids=devs)
        return [_mqtt(at, i, f"clear congestion on {_describe(step, area, devs)}", cmd)]
    if isinstance(step, s.SensorFault):
        area, devs = _sensors(world, step, i)
        fault = wire.SimFault(
            action="fault", kind=step.kind, area_id=area, device_ids=devs,
            duration_s=step.duration_s, skew_s=step.skew_s,
        )  # fmt: skip
        return [_mqtt(at, i, f"{step.kind} on {_describe(step, area, devs)}", fault)]
    if isinstance(step, s.ClearFaults):
        area, devs = _sensors(world, step, i) if step.has_target() else (None, None)
        fault = wire.SimFault(action="clear_faults", area_id=area, device_ids=devs)
        return [_mqtt(at, i, f"clear faults on {_describe(step, area, devs)}", fault)]
    if isinstance(step, s.NetworkDown | s.NetworkUp):
        return _network(step, i, world)
    if isinstance(step, s.Flap):
        area, devs = _sensors(world, step, i)
        period = step.down_s + step.up_s
        down = wire.SimFault(
            action="fault", kind="store_and_forward", area_id=area, device_ids=devs,
            duration_s=step.down_s,
        )  # fmt: skip
        who = _describe(step, area, devs)
        return [
            _mqtt(
                at + k * period,
                i,
                f"flap {k + 1}/{step.cycles}: {who} down {step.down_s:g} s",
                down,
            )
            for k in range(step.cycles)
        ]
    if isinstance(step, s.CameraFaultStep):
        return [
            CameraAction(at, i, f"camera {n}: {step.fault}", "fault", n, step.fault, True)
            for n in step.camera_list()
        ]
    if isinstance(step, s.CameraClear):
        if step.fault is not None:
            label = f"camera {step.camera}: {step.fault} cleared"
            return [CameraAction(at, i, label, "fault", step.camera, step.fault, False)]
        who = f"camera {step.camera}" if step.camera else "every camera"
        return [CameraAction(at, i, f"{who}: faults cleared", "clear", step.camera)]
    if isinstance(step, s.CameraTime):
        return [
            CameraAction(at, i, f"cameras: time of day {step.hour:g} h", "time", hour=step.hour)
        ]
    assert isinstance(step, s.Publish)
    if step.payload_b64 is not None:
        body = base64.b64decode(step.payload_b64)
    elif step.payload is not None:
        body = step.payload.encode()
    else:
        body = json.dumps(step.payload_json, ensure_ascii=False).encode()
    body *= step.repeat_bytes
    return [MqttAction(at, i, f"publish {len(body)} bytes to {step.topic}", step.topic, body,
                       step.qos, step.retain)]  # fmt: skip


def _network(step: s.NetworkDown | s.NetworkUp, i: int, world: World) -> list[Action]:
    out: list[Action] = []
    areas = step.area_list()
    for a in areas:
        if a not in world.parents:
            raise PlanError(("timeline", i, "area"), f"area {a!r} is not in the database")
    down = isinstance(step, s.NetworkDown)
    where = ", ".join(areas)
    sensors = world.in_areas(areas, "traffic_sensor")
    if sensors:
        leaf = areas[0] if len(areas) == 1 and world.is_leaf(areas[0]) else None
        ids = None if leaf else sensors
        cmd = (
            wire.SimFault(action="fault", kind="store_and_forward", area_id=leaf, device_ids=ids,
                          duration_s=step.duration_s or s.MAX_S)
            if isinstance(step, s.NetworkDown)
            else wire.SimFault(action="clear_faults", area_id=leaf, device_ids=ids)
        )  # fmt: skip
        verb = "down" if down else "back"
        out.append(_mqtt(step.at, i, f"network {verb} in {where}: {len(sensors)} sensors", cmd))
    cams = sorted(
        c for d in world.in_areas(areas, "camera") if (c := world.devices[d].camera) is not None
    )
    if isinstance(step, s.NetworkDown) and step.cameras:
        for n in cams:
            out.append(CameraAction(step.at, i, f"camera {n}: link down", "fault", n, "hang", True))
            if step.duration_s is not None:
                end = step.at + step.duration_s
                out.append(
                    CameraAction(end, i, f"camera {n}: link back", "fault", n, "hang", False)
                )
    elif not down:
        for n in cams:
            out.append(
                CameraAction(step.at, i, f"camera {n}: link back", "fault", n, "hang", False)
            )
    if not out:
        raise PlanError(("timeline", i, "area"), f"no sensors or cameras in {where}")
    return out


def plan(scenario: s.Scenario, world: World) -> list[Action]:
    """Every action of the scenario, in time order (ties keep the file's order)."""
    actions: list[Action] = []
    for i, step in enumerate(scenario.timeline):
        once = _expand(step, i, world)
        for k in range(step.repeat):
            shift = k * (step.every_s or 0.0)
            actions.extend(replace(a, at=a.at + shift) for a in once)
    return sorted(actions, key=lambda a: a.at)


def undo(actions: Iterable[Action]) -> list[Action]:
    """Commands that end what ``actions`` started (the runner's clean-up): their faults and
    jams, cleared on the same sensors, and the camera faults they left on."""
    sim: dict[bytes, Action] = {}
    cams: dict[tuple[int, str], Action] = {}
    for a in actions:
        if isinstance(a, MqttAction) and a.topic == wire.SIM_CONTROL:
            action = json.loads(a.payload).get("action")
            end: wire.SimControl | wire.SimFault
            if action == "fault":
                cmd = wire.SimFault.model_validate_json(a.payload)
                end = wire.SimFault(action="clear_faults", area_id=cmd.area_id,
                                    device_ids=cmd.device_ids)  # fmt: skip
            elif action == "congestion":
                jam = wire.SimControl.model_validate_json(a.payload)
                end = wire.SimControl(
                    action="clear", area_id=jam.area_id, device_ids=jam.device_ids
                )
            else:
                continue
            body = end.model_dump_json().encode()
            sim[body] = MqttAction(0.0, a.step, f"clean up: {end.action}", wire.SIM_CONTROL, body)
        elif isinstance(a, CameraAction) and a.op == "fault" and a.camera and a.fault:
            key = (a.camera, a.fault)
            if a.on:
                cams[key] = CameraAction(0.0, a.step, f"clean up: camera {a.camera} {a.fault} off",
                                         "fault", a.camera, a.fault, False)  # fmt: skip
            else:
                cams.pop(key, None)
        elif isinstance(a, CameraAction) and a.op == "clear":
            for key in [k for k in cams if a.camera in (None, k[0])]:
                cams.pop(key)
    return [*sim.values(), *cams.values()]
