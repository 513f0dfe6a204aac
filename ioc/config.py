"""One typed settings object for every role.

Read once through :func:`get_settings`. Every value has a default that runs the whole centre on
one laptop; each can be overridden by an ``IOC_*`` environment variable or a ``.env`` file.
Outside development, default secrets are refused (the same habit as full-stack-fastapi-template).
"""

from __future__ import annotations

import functools
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-change-me"


def _default_state_dir() -> Path:
    return PROJECT_ROOT / ".state"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="IOC_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"

    # Where the local services keep their data, logs and generated credentials.
    state_dir: Path = Field(default_factory=_default_state_dir)

    # PostgreSQL + TimescaleDB. The URL wins when given (production); otherwise the
    # local cluster started by `ioc services up` is used.
    database_url: str | None = None
    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_user: str = "ioc"
    pg_password: str = DEV_SECRET
    pg_database: str = "ioc"

    # MQTT broker (Mosquitto locally).
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 51883
    mqtt_ingest_user: str = "ioc-ingest"
    mqtt_ingest_password: str = DEV_SECRET
    mqtt_sim_user: str = "ioc-sim"
    mqtt_sim_password: str = DEV_SECRET
    # MQTT v5 shared-subscription group for scaling ingest over several workers. Empty (the
    # default, one worker) subscribes plainly: Mosquitto 2.0 restores plain persistent
    # subscriptions after a broker restart but not shared ones (docs/mqtt.md, "Broker restarts").
    mqtt_share_group: str = ""
    # Stable across restarts, so a restarted worker resumes its persistent session and gets
    # the messages it had not acknowledged. Run several workers on one host: give each its own.
    mqtt_client_id: str = Field(default_factory=lambda: f"ioc-ingest-{socket.gethostname()}")

    # RTSP simulator.
    rtsp_port: int = 58554

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    secret_key: str = DEV_SECRET

    # Ingest batching: a batch is written when it is this big or this old.
    ingest_batch_size: int = 500
    ingest_batch_seconds: float = 0.5
    ingest_queue_max: int = 10_000
    # Prometheus metrics of `ioc ingest mqtt` at http://127.0.0.1:<port>/metrics; 0 turns it off.
    ingest_metrics_port: int = 9101

    # Alert engine.
    alerts_interval_seconds: float = 1.0

    # Live stream: per-client queue bound; a client that falls further behind must resync.
    ws_client_queue_max: int = 1000

    # Deployment data: geography and rules are files, so another province is another file.
    areas_file: Path = PROJECT_ROOT / "config" / "areas" / "binh-phuoc.yaml"
    rules_file: Path = PROJECT_ROOT / "config" / "rules.yaml"
    frontend_dir: Path = PROJECT_ROOT / "frontend"

    # Simulator.
    sim_sensors: int = 300
    sim_seed: int = 58
    sim_interval_seconds: float = 2.0

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            for name in ("pg_password", "secret_key", "mqtt_ingest_password", "mqtt_sim_password"):
                if getattr(self, name) == DEV_SECRET:
                    raise ValueError(
                        f"IOC_{name.upper()} still has the development default; "
                        "set a real secret before running with IOC_ENVIRONMENT=production"
                    )
        return self

    @property
    def dsn(self) -> str:
        """libpq connection string for psycopg (never logged: it carries the password)."""
        if self.database_url:
            return self.database_url.replace("postgresql+psycopg://", "postgresql://")
        return (
            f"postgresql://{self.pg_user}:{self.pg_password}@{self.pg_host}:{self.pg_port}"
            f"/{self.pg_database}"
        )

    @property
    def sqlalchemy_url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+psycopg://", 1)


@functools.cache
def get_settings() -> Settings:
    return Settings()
