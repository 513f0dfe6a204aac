"""Rollup and retention settings, read from ``IOC_ROLLUP_*`` (until they move into
``ioc.config.Settings``). Every default runs locally; the retention defaults are the issue's:
raw readings 30 days, rollups 2 years.

IOC_ROLLUP_INTERVAL_SECONDS        how often the role looks for new readings (15)
IOC_ROLLUP_LAG_SECONDS             readings received in the last N seconds wait one tick (5)
IOC_ROLLUP_STEP_MINUTES            at most this much received time per transaction (60)
IOC_ROLLUP_RAW_RETENTION_DAYS      traffic_observations and camera_health (30)
IOC_ROLLUP_RETENTION_DAYS          every rollup table (730)
IOC_ROLLUP_RETENTION_1M_DAYS       the 1-minute tables only, if set (they are as big as the raw
                                   table at one reading a minute: ~2.9 M rows a day for 2,000
                                   sensors)
IOC_ROLLUP_RETENTION_EVERY_SECONDS how often retention runs (3600)
IOC_THUMBNAIL_HISTORY_HOURS        past camera thumbnails (camera_thumbnail_history) are kept
                                   this long; 0 (the default: no history) drops every past
                                   chunk. The camera workers read the same variable
                                   (Settings.thumbnail_history_hours, docs/privacy.md)
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RollupSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IOC_ROLLUP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,  # RollupSettings(thumbnail_history_hours=...) in tests
    )

    interval_seconds: float = Field(default=15.0, gt=0)
    lag_seconds: float = Field(default=5.0, ge=0)
    # A transaction still open after this long no longer holds the watermark back (it is
    # logged): one forgotten session must not stop the rollups.
    max_transaction_age_seconds: float = Field(default=600.0, gt=0)
    step_minutes: float = Field(default=60.0, gt=0)
    raw_retention_days: float = Field(default=30.0, gt=0)
    retention_days: float = Field(default=730.0, gt=0)
    retention_1m_days: float | None = Field(default=None, gt=0)
    retention_every_seconds: float = Field(default=3600.0, gt=0)
    thumbnail_history_hours: float = Field(
        default=0.0,
        ge=0,
        validation_alias="IOC_THUMBNAIL_HISTORY_HOURS",  # shared with the camera workers
    )
