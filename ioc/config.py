"""One typed settings object for every role.

Read once through :func:`get_settings`. Every value has a default that runs the whole centre on
one laptop; each can be overridden by an ``IOC_*`` environment variable or a ``.env`` file.
Outside development, default secrets are refused (the same habit as full-stack-fastapi-template).
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEV_SECRET = "dev-only-change-me"
# Read from IOC_<NAME>_FILE when set; refused at their development default in production.
SECRET_FIELDS = (
    "pg_password",
    "secret_key",
    "mqtt_ingest_password",
    "mqtt_sim_password",
    "mqtt_device_secret",
)
# Read from IOC_<NAME>_FILE too, but refused at their development default only by the roles
# that use them (a centre without cameras needs no camera password): ingest/rtsp/config.py.
ROLE_SECRET_FIELDS = ("rtsp_password",)
# Camera durations: a clear error naming the variable; True where 0 is allowed.
CAMERA_NUMBER_FIELDS = {
    "camera_lease_seconds": False,
    "camera_health_seconds": False,
    "camera_thumbnail_seconds": False,
    "sim_camera_day_seconds": False,
    "thumbnail_history_hours": True,  # 0: only the latest thumbnail is kept
    "thumbnail_history_every_seconds": False,
}

METRICS_PORT_FIELDS = (
    "ingest_metrics_port",
    "rtsp_metrics_port",
    "alerts_metrics_port",
    "rollups_metrics_port",
)


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
    # Every field device logs in as its id with a password derived from this secret
    # (ioc/mqtt_logins.py, docs/mqtt.md "Logins"). Changing it re-keys the whole fleet.
    mqtt_device_secret: str = DEV_SECRET
    # Whether the broker logins include mqtt_sim_user (read+write ioc/#: the simulator's control
    # channel, replay, tests). None: yes in development and test, no in production.
    mqtt_sim_login: bool | None = None
    # MQTT v5 shared-subscription group for scaling ingest over several workers. Empty (the
    # default, one worker) subscribes plainly: Mosquitto 2.0 restores plain persistent
    # subscriptions after a broker restart but not shared ones (docs/mqtt.md, "Broker restarts").
    mqtt_share_group: str = ""
    # Stable across restarts, so a restarted worker resumes its persistent session and gets
    # the messages it had not acknowledged. Run several workers on one host: give each its own.
    mqtt_client_id: str = Field(default_factory=lambda: f"ioc-ingest-{socket.gethostname()}")

    # RTSP simulator.
    rtsp_port: int = 58554

    # Cameras (docs/cameras.md): their login, the camera workers and the camera simulator.
    # ingest/rtsp/config.py derives the values that depend on others (URL, control port).
    rtsp_user: str = "ioc-cam"
    rtsp_password: str = DEV_SECRET  # IOC_RTSP_PASSWORD_FILE reads a file
    rtsp_base_url: str | None = None  # where seeded cameras live; None: the local simulator
    rtsp_control_port: int | None = None  # the simulator's control endpoint; None: rtsp_port+1
    camera_worker_id: str | None = None  # the lease holder's name; None: <host>-<pid>
    camera_pool: str = "default"  # which cameras this worker may lease
    camera_lease_seconds: float = 15.0
    camera_health_seconds: float = 5.0
    camera_thumbnail_seconds: float = 5.0
    privacy_masks_file: Path | None = None  # None: config/privacy-masks.yaml when it exists
    # Past thumbnails kept this long (0: only the latest); `ioc rollups` reads it too.
    thumbnail_history_hours: float = 0.0
    thumbnail_history_every_seconds: float = 60.0
    sim_cameras: int = Field(default=8, ge=0)
    sim_camera_size: str = "640x360"
    sim_camera_fps: int = Field(default=10, gt=0)
    sim_camera_day_seconds: float = 600.0

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    secret_key: str = DEV_SECRET  # signs access tokens (JWT); IOC_SECRET_KEY_FILE reads a file
    access_token_minutes: float = 15
    session_idle_hours: float = 12  # a session unused this long ends
    session_max_days: float = 7  # and every session ends this long after sign-in
    login_max_failures: int = 5  # consecutive failures before the account locks
    login_lockout_seconds: float = 60  # the first lock; each further failure doubles it (≤ 15 min)
    login_ip_max_failures: int = 30  # failed sign-ins from one address per 5 minutes
    # Browser origins allowed besides the API's own (websocket Origin check and cookie-
    # authenticated writes). "*" is refused outside development.
    allowed_origins: list[str] = Field(default_factory=list)
    cookie_secure: bool | None = None  # None: secure cookies (HTTPS only) in production

    # Ingest batching: a batch is written when it is this big or this old.
    ingest_batch_size: int = 500
    ingest_batch_seconds: float = 0.5
    ingest_queue_max: int = 10_000
    # Prometheus metrics of `ioc ingest mqtt` at http://127.0.0.1:<port>/metrics; 0 turns it off.
    ingest_metrics_port: int = 9101

    # Each role's own /metrics, /healthz and /readyz (ioc/observe.py); 0 turns it off. With
    # IOC_ENVIRONMENT=test every metrics port not set explicitly is 0: tests run several roles
    # at once and give a free port to the one they look at.
    rtsp_metrics_port: int = 9102
    alerts_metrics_port: int = 9103
    rollups_metrics_port: int = 9104
    # GET /api/v1/freshness calls a source stale when its newest data is older than this
    # (seconds, per source; a source not listed here uses "default").
    freshness_stale_seconds: dict[str, float] = Field(
        default_factory=lambda: {
            "traffic": 60.0,
            "cameras": 60.0,
            "alerts": 30.0,
            "rollups": 300.0,
            "events": 30.0,
            "default": 120.0,
        }
    )

    # Alert engine.
    alerts_interval_seconds: float = 1.0

    # Live stream: per-client queue bound; a client that falls further behind must resync.
    ws_client_queue_max: int = 1000
    # How often open sockets' sessions are checked: a signed-out or revoked session's streams
    # close within this time (one query per API process, whatever the number of sockets).
    ws_session_check_seconds: float = 10.0
    # permessage-deflate on the live stream. Off: stream messages are small JSON, and deflate
    # costs the API about a third of its CPU per message (ioc bench fanout) for little saved.
    ws_compression: bool = False

    # Deployment data: geography and rules are files, so another province is another file.
    areas_file: Path = PROJECT_ROOT / "config" / "areas" / "binh-phuoc.yaml"
    rules_file: Path = PROJECT_ROOT / "config" / "rules.yaml"
    frontend_dir: Path = PROJECT_ROOT / "frontend"

    # Simulator.
    sim_sensors: int = 300
    sim_seed: int = 58
    sim_interval_seconds: float = 2.0

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, data: Any) -> Any:
        """``IOC_<NAME>_FILE=/run/secrets/x`` reads a secret from a file (Docker/Kubernetes
        secrets), so it need not sit in the environment."""
        if not isinstance(data, dict):
            return data
        for name in (*SECRET_FIELDS, *ROLE_SECRET_FIELDS):
            path = os.environ.get(f"IOC_{name.upper()}_FILE")
            if path and name not in data:
                try:
                    data[name] = Path(path).read_text(encoding="utf-8").strip()
                except OSError as e:
                    raise ValueError(
                        f"IOC_{name.upper()}_FILE: cannot read {path}: {e.strerror}"
                    ) from None
        return data

    @field_validator(*CAMERA_NUMBER_FIELDS, mode="before")
    @classmethod
    def _camera_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = str(info.field_name)
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[field].default  # VAR= (as compose may pass): the default
        name, zero = f"IOC_{field.upper()}", CAMERA_NUMBER_FIELDS[field]
        try:
            number = float(value)
        except (TypeError, ValueError):
            unit = name.rsplit("_", 1)[-1].lower()
            raise ValueError(f"{name} must be a number of {unit}, not {value!r}") from None
        if not number >= 0 or (number == 0 and not zero):  # NaN fails too
            limit = "0 or more" if zero else "more than 0"
            raise ValueError(f"{name} must be {limit}, not {value}")
        return number

    @field_validator(
        "rtsp_base_url",
        "rtsp_control_port",
        "camera_worker_id",
        "privacy_masks_file",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("sim_camera_size")
    @classmethod
    def _camera_size(cls, value: str) -> str:
        width, x, height = value.lower().partition("x")
        if not (x and width.isdigit() and height.isdigit() and int(width) and int(height)):
            raise ValueError(f"IOC_SIM_CAMERA_SIZE must look like 640x360, not {value!r}")
        return f"{int(width)}x{int(height)}"

    @model_validator(mode="after")
    def _no_fixed_ports_in_tests(self) -> Settings:
        if self.environment == "test":
            for name in METRICS_PORT_FIELDS:
                if name not in self.model_fields_set:
                    setattr(self, name, 0)
        return self

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.environment == "production":
            for name in SECRET_FIELDS:
                if getattr(self, name, None) == DEV_SECRET:
                    raise ValueError(
                        f"IOC_{name.upper()} still has the development default; "
                        "set a real secret before running with IOC_ENVIRONMENT=production"
                    )
            if len(self.secret_key) < 32:
                raise ValueError("IOC_SECRET_KEY must be at least 32 characters in production")
            if "*" in self.allowed_origins:
                raise ValueError(
                    "IOC_ALLOWED_ORIGINS contains '*': list the dashboard's real origins "
                    "before running with IOC_ENVIRONMENT=production"
                )
        return self

    @property
    def secure_cookies(self) -> bool:
        return (
            self.environment == "production" if self.cookie_secure is None else self.cookie_secure
        )

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
