"""The MQTT wire contract: every topic, payload schema and version, written once.

Simulators, the ingest worker and the tests all import this module; ``docs/mqtt.md`` is its
human-readable twin. Payload fields follow FIWARE TrafficFlowObserved (``intensity``,
``averageVehicleSpeed``, ``occupancy``, ``dateObserved``) plus a per-device sequence number that
makes any gap or duplicate visible.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION = 1
TOPIC_ROOT = "ioc/v1"
QOS_OBSERVATION = 1

# Traffic sensor publishes one observation per interval (QoS 1, not retained).
TRAFFIC_OBSERVATION = TOPIC_ROOT + "/traffic/{device_id}/observation"
# Retained "online"/"offline"; "offline" is also the sensor's Last Will.
TRAFFIC_AVAILABILITY = TOPIC_ROOT + "/traffic/{device_id}/availability"
# Simulator control channel (scenarios, tests, `ioc simulate congest`). QoS 1, not retained.
SIM_CONTROL = TOPIC_ROOT + "/sim/control"

TRAFFIC_OBSERVATION_FILTER = TOPIC_ROOT + "/traffic/+/observation"
TRAFFIC_AVAILABILITY_FILTER = TOPIC_ROOT + "/traffic/+/availability"
AVAILABILITY_STATES = ("online", "offline")

# Observations stamped further ahead of the receiver's clock than this are rejected.
MAX_CLOCK_SKEW = timedelta(minutes=5)
# Older than this is a broken clock, not store-and-forward (late data within it is stored).
MAX_AGE = timedelta(days=7)
_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
MAX_PAYLOAD_BYTES = 16 * 1024


def shared_subscription(group: str, topic_filter: str) -> str:
    """MQTT v5 shared subscription: the broker spreads messages over the group's members."""
    return f"$share/{group}/{topic_filter}"


def observation_topic(device_id: str) -> str:
    return TRAFFIC_OBSERVATION.format(device_id=device_id)


def availability_topic(device_id: str) -> str:
    return TRAFFIC_AVAILABILITY.format(device_id=device_id)


def _traffic_device(topic: str, leaf: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 5 and "/".join(parts[:3]) == TOPIC_ROOT + "/traffic" and parts[4] == leaf:
        return parts[3] or None
    return None


def device_id_from_topic(topic: str) -> str | None:
    """The sensor id of an observation topic, else None."""
    return _traffic_device(topic, "observation")


def device_id_from_availability_topic(topic: str) -> str | None:
    return _traffic_device(topic, "availability")


def correlation_id(device_id: str, seq: int) -> str:
    """A reading's identity, ``<device_id>/<seq>``: logged by ingest and carried by the alert it
    triggers (``correlation_id`` in the alert event), so one id can be followed end to end."""
    return f"{device_id}/{seq}"


def parse_availability(payload: bytes) -> str | None:
    """``online`` / ``offline`` (the Last Will), or None for anything else."""
    text = payload.strip().decode("ascii", "replace").lower()
    return text if text in AVAILABILITY_STATES else None


class Reason(StrEnum):
    """Why a message was dead-lettered. Stable strings: they are counted and stored."""

    TOO_LARGE = "too_large"
    BAD_JSON = "bad_json"
    UNSUPPORTED_VERSION = "unsupported_version"
    SCHEMA = "schema"
    OUT_OF_RANGE = "out_of_range"
    TOPIC_MISMATCH = "topic_mismatch"
    BAD_TOPIC = "bad_topic"
    CLOCK_SKEW = "clock_skew"
    UNKNOWN_DEVICE = "unknown_device"
    DB_REJECTED = "db_rejected"  # valid by contract, refused by the database (kept, never retried)


DeviceId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class TrafficObservation(BaseModel):
    """Payload of ``ioc/v1/traffic/{device_id}/observation``, schema version 1."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = 1
    device_id: DeviceId
    seq: int = Field(ge=0, description="per-device sequence number, +1 per observation")
    observed_at: datetime = Field(
        description="end of the observation interval, ISO 8601 with offset"
    )
    intensity: int = Field(ge=0, le=100_000, description="vehicles counted in the interval")
    average_speed: float = Field(ge=0, le=300, description="km/h")
    occupancy: float = Field(
        ge=0, le=1, description="fraction of the interval the loop was occupied"
    )
    interval_s: int = Field(default=60, ge=1, le=3600)

    @field_validator("v", mode="before")
    @classmethod
    def _exact_version(cls, value: object) -> object:
        if type(value) is not int:  # JSON true or 1.0 is not version 1
            raise ValueError("v must be the integer 1")
        return value

    @field_validator("average_speed")
    @classmethod
    def _speed_precision(cls, value: float) -> float:
        return round(value, 2)  # also keeps 1e-95 from underflowing the database's float4

    @field_validator("occupancy")
    @classmethod
    def _occupancy_precision(cls, value: float) -> float:
        return round(value, 4)

    @field_validator("observed_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("observed_at must carry a UTC offset")
        return value.astimezone(UTC)

    def to_payload(self) -> bytes:
        return self.model_dump_json().encode()


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Reason
    detail: str


def parse_observation(
    topic: str, payload: bytes, *, now: datetime
) -> TrafficObservation | Rejected:
    """Validate one message against the contract. Pure: the caller supplies the clock."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return Rejected(Reason.TOO_LARGE, f"{len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
    topic_device = device_id_from_topic(topic)
    if topic_device is None:
        return Rejected(Reason.BAD_TOPIC, f"not an observation topic: {topic[:200]}")
    try:  # fast path: one pass in pydantic-core for the (usual) valid message
        fast = TrafficObservation.model_validate_json(payload)
    except ValidationError:
        pass  # find out exactly why, below
    else:
        if fast.device_id == topic_device and now - MAX_AGE <= fast.observed_at <= (
            now + MAX_CLOCK_SKEW
        ):
            return fast
    try:
        raw = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejected(Reason.BAD_JSON, str(exc)[:200])
    if not isinstance(raw, dict):
        return Rejected(Reason.BAD_JSON, "payload is not a JSON object")
    version = raw.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:  # True == 1 in Python
        return Rejected(Reason.UNSUPPORTED_VERSION, f"v={version!r}, this worker reads v=1")
    try:
        obs = TrafficObservation.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        reason = Reason.OUT_OF_RANGE if first["type"] in _RANGE_ERRORS else Reason.SCHEMA
        return Rejected(reason, f"{where}: {first['msg']}"[:200])
    if obs.device_id != topic_device:
        return Rejected(Reason.TOPIC_MISMATCH, f"topic {topic_device} != payload {obs.device_id}")
    if obs.observed_at > now + MAX_CLOCK_SKEW:
        return Rejected(Reason.CLOCK_SKEW, f"observed_at {obs.observed_at.isoformat()} is ahead")
    if obs.observed_at < now - MAX_AGE:
        return Rejected(Reason.CLOCK_SKEW, f"observed_at {obs.observed_at.isoformat()} is too old")
    return obs


class SimControl(BaseModel):
    """Payload of ``ioc/v1/sim/control``: tell the traffic simulator to cause or clear trouble."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["congestion", "clear"]
    area_id: str | None = None
    device_ids: list[str] | None = None
    speed_kmh: float = Field(default=8.0, ge=0, le=300)
    duration_s: float = Field(default=300.0, gt=0, le=86_400)


# --------------------------------------------------------------------------------------------
# Simulator fault injection (added with the traffic simulator, issue 4). Same channel as
# SimControl (``ioc/v1/sim/control``); the two are told apart by ``action``.

# What each kind does on the wire is described in docs/mqtt.md and simulators/traffic_faults.py.
SimFaultKind = Literal[
    "silent",
    "stuck",
    "out_of_range",
    "clock_skew",
    "malformed_json",
    "wrong_version",
    "duplicate",
    "store_and_forward",
]
SIM_FAULT_KINDS: tuple[SimFaultKind, ...] = (
    "silent",
    "stuck",
    "out_of_range",
    "clock_skew",
    "malformed_json",
    "wrong_version",
    "duplicate",
    "store_and_forward",
)


class SimFault(BaseModel):
    """Payload of ``ioc/v1/sim/control`` that makes simulated sensors misbehave.

    ``fault`` (``kind`` required) starts a fault on the sensors of ``area_id`` plus
    ``device_ids`` for ``duration_s``; ``clear_faults`` ends all faults on those sensors, or
    on every sensor when none are given.
    """

    model_config = ConfigDict(extra="forbid")

    action: Literal["fault", "clear_faults"]
    kind: SimFaultKind | None = None
    area_id: str | None = None
    device_ids: list[str] | None = None
    duration_s: float = Field(default=60.0, gt=0, le=86_400)
    # clock_skew only: how far the sensor's clock is off (positive = ahead).
    skew_s: float = Field(default=600.0, ge=-30 * 86_400, le=30 * 86_400)
