"""API response and request models (pydantic), separate from database rows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


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


class DeviceOut(BaseModel):
    id: str
    name: str
    kind: Literal["traffic_sensor", "camera"]
    area_id: str
    lat: float
    lon: float
    status: Literal["ok", "alert", "unknown"]
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
    updated_at: datetime


class AckIn(BaseModel):
    note: str | None = Field(default=None, max_length=2000)


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    stream_position: int
    stream_clients: int
