"""API response and request models (pydantic), separate from database rows."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import HTTPException, Path
from pydantic import BaseModel, Field, field_validator

# Text that reaches the database: PostgreSQL text cannot hold NUL (U+0000), so input with one is
# refused as invalid (422) here rather than failing in SQL (500).
PLAIN = r"^[^\x00]*$"
PlainPath = Annotated[str, Path(pattern=PLAIN)]  # a path parameter that goes into SQL
# Times a request may name lie within these years: nothing is recorded outside them, and the
# bound keeps date arithmetic (a week back, local days) and the database's own range (psycopg
# cannot read a timestamp before year 1 or after 9999, e.g. "0001-01-01T00:00+05:00") safe.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def invalid(where: Literal["path", "query", "body"], name: str, message: str) -> HTTPException:
    """A 422 in the shape FastAPI gives its own validation errors (and the schema declares for
    every route): ``detail`` is a list of {loc, msg, type}, ``loc`` naming the input at fault."""
    return HTTPException(422, [{"type": "value_error", "loc": [where, name], "msg": message}])


class AreaOut(BaseModel):
    id: str
    parent_id: str | None
    name: str
    name_en: str
    level: str
    lat: float
    lon: float


class LastReading(BaseModel):
    speed_kmh: float | None = None
    intensity: int | None = None
    occupancy: float | None = None
    interval_s: int | None = None
    # cameras
    status: str | None = None
    fps: float | None = None


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: Literal["traffic_sensor", "camera", "site"]
    area_id: str
    parent_id: str | None = None
    lat: float
    lon: float
    status: Literal["ok", "alert", "offline", "silent", "stuck", "problem", "unknown"]
    reason: str
    reason_en: str
    online: bool | None
    last_seen: datetime | None
    last: LastReading | None


class AlertOut(BaseModel):
    id: int
    rule_id: str
    device_id: str
    device_name: str
    area_id: str
    severity: str
    status: str
    title: str
    title_en: str
    value: float | None
    started_at: datetime
    fired_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    ack_note: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolve_note: str | None = None
    updated_at: datetime
    device_kind: str | None = None
    escalated: bool = False
    escalated_at: datetime | None = None
    base_severity: str | None = None
    suppressed_by: str | None = None
    parent_alert_id: int | None = None
    assignee: str | None = None


class SequenceQualityOut(BaseModel):
    device_id: str
    readings: int
    gaps: int = Field(description="readings missing between consecutive sequence numbers")
    out_of_order: int = Field(description="readings that arrived after a later one")
    late: int = Field(description="readings stored more than 60 s after they were made")
    resets: int = Field(description="times the sequence restarted (a device reboot)")


class AckIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000, pattern=PLAIN)


class NoteIn(BaseModel):
    note: str = Field(min_length=1, max_length=2000, pattern=PLAIN)


class AssignIn(BaseModel):
    assignee: str | None = Field(
        default=None, max_length=100, pattern=PLAIN, description="null unassigns"
    )


class MaintenanceIn(BaseModel):
    device_id: str | None = Field(default=None, pattern=PLAIN)
    area_id: str | None = Field(default=None, pattern=PLAIN)
    starts_at: datetime | None = Field(default=None, description="default: now")
    ends_at: datetime
    reason: str = Field(min_length=1, max_length=500, pattern=PLAIN)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _within_range(cls, t: datetime | None) -> datetime | None:
        if t is not None and not EARLIEST <= t.replace(tzinfo=t.tzinfo or UTC) <= LATEST:
            raise ValueError(f"must lie in {EARLIEST:%Y}..{LATEST:%Y}")
        return t


class MaintenanceOut(BaseModel):
    id: int
    device_id: str | None
    area_id: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    stream_position: int
    stream_clients: int
