"""Camera settings read from the environment (until they move into ``ioc.config.Settings``).

IOC_RTSP_USER, IOC_RTSP_PASSWORD      the cameras' login (simulator and workers)
IOC_RTSP_BASE_URL                     where the seeded cameras live (no credentials)
IOC_RTSP_CONTROL_PORT                 the camera simulator's control endpoint
IOC_CAMERA_WORKER_ID, IOC_CAMERA_POOL  who this worker is, which cameras it may lease
IOC_CAMERA_LEASE_SECONDS, IOC_CAMERA_HEALTH_SECONDS, IOC_CAMERA_THUMBNAIL_SECONDS
IOC_SIM_CAMERAS, IOC_SIM_CAMERA_SIZE, IOC_SIM_CAMERA_FPS, IOC_SIM_CAMERA_DAY_SECONDS
IOC_PRIVACY_MASKS_FILE                the privacy masks (default config/privacy-masks.yaml
                                      when it exists; docs/privacy.md)
IOC_THUMBNAIL_HISTORY_HOURS           keep past thumbnails this long (0, the default: only
                                      the latest is kept); retention is ``ioc rollups``'
IOC_THUMBNAIL_HISTORY_EVERY_SECONDS   at most one past thumbnail per camera this often (60)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ioc.config import DEV_SECRET, PROJECT_ROOT, Settings

DEFAULT_MASKS_FILE = PROJECT_ROOT / "config" / "privacy-masks.yaml"


@dataclass(frozen=True)
class CameraSettings:
    rtsp_user: str
    rtsp_password: str
    rtsp_base_url: str
    control_port: int
    worker_id: str | None
    pool: str
    lease_s: float
    health_s: float
    thumbnail_s: float
    sim_cameras: int
    sim_width: int
    sim_height: int
    sim_fps: int
    sim_day_seconds: float
    privacy_masks_file: Path | None = None
    thumbnail_history_hours: float = 0.0  # 0: only the latest thumbnail is kept
    thumbnail_history_every_s: float = 60.0

    @property
    def history_every_s(self) -> float | None:
        """The worker's cadence for past thumbnails; None when history is off."""
        return self.thumbnail_history_every_s if self.thumbnail_history_hours > 0 else None


def _number(e: Mapping[str, str], name: str, default: float, *, zero: bool) -> float:
    raw = e.get(name, "")
    try:
        value = float(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"{name} must be a number of {name.rsplit('_', 1)[-1].lower()}") from None
    if value < 0 or (value == 0 and not zero) or value != value:
        raise ValueError(f"{name} must be {'0 or more' if zero else 'more than 0'}, not {raw}")
    return value


def camera_settings(settings: Settings, env: dict[str, str] | None = None) -> CameraSettings:
    e = os.environ if env is None else env
    size = e.get("IOC_SIM_CAMERA_SIZE", "640x360").lower().split("x")
    try:
        width, height = int(size[0]), int(size[1])
    except (IndexError, ValueError):
        raise ValueError("IOC_SIM_CAMERA_SIZE must look like 640x360") from None
    password = e.get("IOC_RTSP_PASSWORD", DEV_SECRET)
    if settings.environment == "production" and password == DEV_SECRET:
        raise ValueError(
            "IOC_RTSP_PASSWORD still has the development default; "
            "set the cameras' real password before running with IOC_ENVIRONMENT=production"
        )
    return CameraSettings(
        rtsp_user=e.get("IOC_RTSP_USER", "ioc-cam"),
        rtsp_password=password,
        rtsp_base_url=e.get("IOC_RTSP_BASE_URL", f"rtsp://127.0.0.1:{settings.rtsp_port}"),
        control_port=int(e.get("IOC_RTSP_CONTROL_PORT", settings.rtsp_port + 1)),
        worker_id=e.get("IOC_CAMERA_WORKER_ID") or None,
        pool=e.get("IOC_CAMERA_POOL", "default"),
        lease_s=float(e.get("IOC_CAMERA_LEASE_SECONDS", 15)),
        health_s=float(e.get("IOC_CAMERA_HEALTH_SECONDS", 5)),
        thumbnail_s=float(e.get("IOC_CAMERA_THUMBNAIL_SECONDS", 5)),
        sim_cameras=int(e.get("IOC_SIM_CAMERAS", 8)),
        sim_width=width,
        sim_height=height,
        sim_fps=int(e.get("IOC_SIM_CAMERA_FPS", 10)),
        sim_day_seconds=float(e.get("IOC_SIM_CAMERA_DAY_SECONDS", 600)),
        privacy_masks_file=_masks_file(e.get("IOC_PRIVACY_MASKS_FILE")),
        thumbnail_history_hours=_number(e, "IOC_THUMBNAIL_HISTORY_HOURS", 0.0, zero=True),
        thumbnail_history_every_s=_number(
            e, "IOC_THUMBNAIL_HISTORY_EVERY_SECONDS", 60.0, zero=False
        ),
    )


def _masks_file(value: str | None) -> Path | None:
    """The file named (it must then exist: checked when it is read), else the project's default
    when it exists, else none."""
    if value:
        return Path(value)
    return DEFAULT_MASKS_FILE if DEFAULT_MASKS_FILE.is_file() else None
