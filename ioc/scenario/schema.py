"""The scenario file's schema (pydantic models): a timeline of simulator actions and a list of
expectations about the alerts (and dead letters) that must or must not follow.

``docs/scenarios.md`` is the human twin of this module; :mod:`ioc.scenario.load` reads a file
into these models and checks its references against the deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from ioc.domain import wire
from simulators.cameras.pipeline import FAULTS as CAMERA_FAULTS

SCHEMA_VERSION = 1
MAX_S = 86_400.0
Slug = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Seconds = Annotated[float, Field(ge=0, le=MAX_S)]
Duration = Annotated[float, Field(gt=0, le=MAX_S)]
CameraFault = Literal[
    "frozen", "black", "blurred", "covered", "moved", "low_fps", "drops", "hang", "auth", "path"
]  # fmt: skip
Status = Literal["pending", "firing", "acknowledged", "flapping", "suppressed", "resolved"]
assert set(CameraFault.__args__) == set(CAMERA_FAULTS)  # type: ignore[attr-defined]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Target(_Model):
    """Which sensors an action touches: an area (its whole subtree), optionally only along one
    road of the demo fleet, and/or listed devices."""

    area: Slug | None = None
    road: str | None = Field(default=None, min_length=1, max_length=64)
    device: wire.DeviceId | None = None
    devices: list[wire.DeviceId] | None = Field(default=None, min_length=1, max_length=10_000)

    def device_list(self) -> list[str]:
        return [*([self.device] if self.device else []), *(self.devices or [])]

    def has_target(self) -> bool:
        return bool(self.area or self.device_list())

    @model_validator(mode="after")
    def _road_needs_area(self) -> _Target:
        if self.road and not self.area:
            raise ValueError("road needs the area it runs through")
        return self


class _Step(_Model):
    at: Seconds = Field(description="seconds after the scenario starts")
    id: Slug | None = Field(default=None, description="name for `after:` in expectations")
    repeat: int = Field(default=1, ge=1, le=1000)
    every_s: Duration | None = None

    @model_validator(mode="after")
    def _repeat_needs_period(self) -> _Step:
        if self.repeat > 1 and self.every_s is None:
            raise ValueError("repeat > 1 needs every_s")
        return self


class Congestion(_Step, _Target):
    do: Literal["congestion"]
    speed_kmh: float = Field(default=8.0, ge=0, le=300)
    duration_s: Duration = 300.0

    @model_validator(mode="after")
    def _needs_target(self) -> Congestion:
        _require_target(self)
        return self


class ClearCongestion(_Step, _Target):
    do: Literal["clear_congestion"]


class SensorFault(_Step, _Target):
    do: Literal["sensor_fault"]
    kind: wire.SimFaultKind
    duration_s: Duration = 60.0
    skew_s: float = Field(default=600.0, ge=-30 * MAX_S, le=30 * MAX_S)

    @model_validator(mode="after")
    def _needs_target(self) -> SensorFault:
        _require_target(self)
        return self


class ClearFaults(_Step, _Target):
    do: Literal["clear_faults"]


class NetworkDown(_Step):
    """An area's link or power is gone: its sensors drop off the broker (their Last Will
    says ``offline``, they keep readings and send them when back) and its cameras stop sending
    video, for ``duration_s`` (none: until a ``network_up`` step, or the end of the run)."""

    do: Literal["network_down"]
    area: Slug | None = None
    areas: list[Slug] | None = Field(default=None, min_length=1)
    duration_s: Duration | None = None
    cameras: bool = Field(default=True, description="also hang the area's cameras")

    @model_validator(mode="after")
    def _needs_area(self) -> NetworkDown:
        if not (self.area or self.areas):
            raise ValueError("give area or areas")
        return self

    def area_list(self) -> list[str]:
        return [*([self.area] if self.area else []), *(self.areas or [])]


class NetworkUp(_Step):
    """The link is back (before a ``network_down``'s duration is over): the area's sensors
    reconnect and send what they kept; its cameras stream again."""

    do: Literal["network_up"]
    area: Slug | None = None
    areas: list[Slug] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _needs_area(self) -> NetworkUp:
        if not (self.area or self.areas):
            raise ValueError("give area or areas")
        return self

    def area_list(self) -> list[str]:
        return [*([self.area] if self.area else []), *(self.areas or [])]


class Flap(_Step, _Target):
    """A sensor whose link drops for ``down_s`` and comes back for ``up_s``, ``cycles`` times."""

    do: Literal["flap"]
    down_s: Duration = 3.0
    up_s: Duration = 4.0
    cycles: int = Field(default=5, ge=1, le=1000)

    @model_validator(mode="after")
    def _needs_target(self) -> Flap:
        _require_target(self)
        return self


class CameraFaultStep(_Step):
    do: Literal["camera_fault"]
    camera: int | None = Field(default=None, ge=1, le=10_000)
    cameras: list[Annotated[int, Field(ge=1, le=10_000)]] | None = Field(default=None, min_length=1)
    fault: CameraFault

    @model_validator(mode="after")
    def _needs_camera(self) -> CameraFaultStep:
        if not self.camera_list():
            raise ValueError("give camera or cameras (numbers: camera 3 serves /cam3)")
        return self

    def camera_list(self) -> list[int]:
        return [*([self.camera] if self.camera else []), *(self.cameras or [])]


class CameraClear(_Step):
    """End a camera's faults: one (``fault``) or all of them; without ``camera``, every
    camera's."""

    do: Literal["camera_clear"]
    camera: int | None = Field(default=None, ge=1, le=10_000)
    fault: CameraFault | None = None

    @model_validator(mode="after")
    def _fault_needs_camera(self) -> CameraClear:
        if self.fault is not None and self.camera is None:
            raise ValueError("fault needs the camera it is cleared on")
        return self


class CameraTime(_Step):
    """Set the camera simulator's time of day (its day/night cycle continues from there)."""

    do: Literal["camera_time"]
    hour: float = Field(ge=0, lt=24)


class Publish(_Step):
    """Publish one raw message (as the simulator login): garbage a sensor might send."""

    do: Literal["publish"]
    topic: str = Field(min_length=1, max_length=1024, pattern=r"^ioc/v1/[^#+]*$")
    payload: str | None = None
    payload_b64: str | None = Field(default=None, pattern=r"^[A-Za-z0-9+/]*={0,2}$")
    payload_json: Any = None
    repeat_bytes: int = Field(default=1, ge=1, le=1_000_000, description="payload repeated")
    qos: Literal[0, 1] = 1
    retain: bool = False

    @model_validator(mode="after")
    def _one_payload(self) -> Publish:
        given = [
            self.payload is not None,
            self.payload_b64 is not None,
            self.payload_json is not None,
        ]
        if sum(given) != 1:
            raise ValueError("give exactly one of payload, payload_b64, payload_json")
        return self


Step = Annotated[
    Congestion | ClearCongestion | SensorFault | ClearFaults | NetworkDown | NetworkUp | Flap
    | CameraFaultStep | CameraClear | CameraTime | Publish,
    Field(discriminator="do"),
]  # fmt: skip


def _require_target(t: _Target) -> None:
    if not t.has_target():
        raise ValueError("give area (optionally with road), device or devices")


# ------------------------------------------------------------------------ expectations ---


class _Scope(_Model):
    """Where an expectation looks: devices, cameras (by number), areas (whole subtrees), or,
    with none of them, everywhere."""

    device: wire.DeviceId | None = None
    devices: list[wire.DeviceId] | None = Field(default=None, min_length=1)
    camera: int | None = Field(default=None, ge=1)
    cameras: list[Annotated[int, Field(ge=1)]] | None = Field(default=None, min_length=1)
    area: Slug | None = None
    areas: list[Slug] | None = Field(default=None, min_length=1)
    after: Slug | None = Field(default=None, description="step id the clock starts at")
    name: str | None = Field(default=None, max_length=200, description="label in the report")

    def device_list(self) -> list[str]:
        return [*([self.device] if self.device else []), *(self.devices or [])]

    def camera_list(self) -> list[int]:
        return [*([self.camera] if self.camera else []), *(self.cameras or [])]

    def area_list(self) -> list[str]:
        return [*([self.area] if self.area else []), *(self.areas or [])]

    def lists_devices(self) -> bool:
        return bool(self.device_list() or self.camera_list())


class AlertExpect(_Scope):
    """Alert ``alert`` (a rule id) reaches ``status`` on the scope within ``within_s``."""

    alert: Slug
    status: Status = "firing"
    within_s: Duration
    count: int | Literal["all"] | None = Field(
        default=None, description="distinct devices; default all listed, else 1"
    )

    @model_validator(mode="after")
    def _count(self) -> AlertExpect:
        if isinstance(self.count, int) and self.count < 1:
            raise ValueError("count must be >= 1 or 'all'")
        return self


class NoAlertExpect(_Scope):
    """No alert of rule ``no_alert`` (``any``: of any rule) on the scope takes one of
    ``status`` during the window (default: from the start, or ``after``, to the end)."""

    no_alert: Slug
    status: list[Status] = Field(default=["firing", "flapping"], min_length=1)
    for_s: Duration | None = None


class DeadLettersExpect(_Scope):
    """Each reason code in ``dead_letters`` is stored for the scope within ``within_s``."""

    dead_letters: list[wire.Reason] = Field(min_length=1)
    within_s: Duration

    @model_validator(mode="after")
    def _devices_only(self) -> DeadLettersExpect:
        if self.camera_list() or self.area_list():
            raise ValueError("dead letters are matched by device (the topic's id): use device(s)")
        return self


def _expect_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for key in ("alert", "no_alert", "dead_letters"):
            if key in value:
                return f"expect:{key}"
    return None


Expectation = Annotated[
    Annotated[AlertExpect, Tag("expect:alert")]
    | Annotated[NoAlertExpect, Tag("expect:no_alert")]
    | Annotated[DeadLettersExpect, Tag("expect:dead_letters")],
    Discriminator(
        _expect_tag,
        custom_error_type="expectation",
        custom_error_message="an expectation starts with alert:, no_alert: or dead_letters:",
    ),
]


class CentreSpec(_Model):
    """How to start the centre for this scenario (``--start-centre`` and the test suite only:
    a running centre keeps its own configuration)."""

    sensors: int = Field(default=60, ge=1, le=10_000)
    interval_s: float = Field(default=1.0, gt=0, le=60)
    cameras: int = Field(default=0, ge=0, le=32)
    camera_day_s: float = Field(default=600.0, gt=0, le=MAX_S)
    rules: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="changes to rules of the rules file, by rule id"
    )


class Scenario(_Model):
    version: Literal[1]
    name: Slug
    title: str = Field(min_length=1, max_length=200)
    description: str = ""
    centre: CentreSpec = CentreSpec()
    duration_s: Seconds = Field(default=0.0, description="watch at least this long")
    timeline: list[Step] = Field(min_length=1, max_length=10_000)
    expect: list[Expectation] = Field(min_length=1, max_length=1000)

    def step_ids(self) -> dict[str, int]:
        return {s.id: i for i, s in enumerate(self.timeline) if s.id}
