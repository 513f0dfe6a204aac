"""The camera roles' view of :class:`ioc.config.Settings`.

Every camera setting (``IOC_RTSP_*``, ``IOC_CAMERA_*``, ``IOC_SIM_CAMERA*``,
``IOC_PRIVACY_MASKS_FILE``, ``IOC_THUMBNAIL_HISTORY_*``; docs/cameras.md) is read and validated
by ``Settings``. This view resolves what depends on other settings or on the machine (the
simulator's URL and control port, the default masks file, the simulator's size) and refuses the
development camera password in production: only the roles that use cameras ask for it, so a
centre without cameras needs no camera password.
"""

from __future__ import annotations

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


class CameraConfigError(ValueError):
    """The camera roles cannot start with these settings (the CLI prints it and exits 2)."""


def camera_settings(settings: Settings, *, logs_in: bool = False) -> CameraSettings:
    """The camera settings. ``logs_in``: for a role that logs in to cameras (the worker, the
    simulator), which refuses the development-default password in production; seeding and the
    privacy commands need no camera password."""
    if logs_in and settings.environment == "production" and settings.rtsp_password == DEV_SECRET:
        raise CameraConfigError(
            "IOC_RTSP_PASSWORD still has the development default; "
            "set the cameras' real password before running with IOC_ENVIRONMENT=production"
        )
    width, _, height = settings.sim_camera_size.partition("x")  # checked by Settings
    return CameraSettings(
        rtsp_user=settings.rtsp_user,
        rtsp_password=settings.rtsp_password,
        rtsp_base_url=settings.rtsp_base_url or f"rtsp://127.0.0.1:{settings.rtsp_port}",
        control_port=settings.rtsp_control_port or settings.rtsp_port + 1,
        worker_id=settings.camera_worker_id or None,
        pool=settings.camera_pool,
        lease_s=settings.camera_lease_seconds,
        health_s=settings.camera_health_seconds,
        thumbnail_s=settings.camera_thumbnail_seconds,
        sim_cameras=settings.sim_cameras,
        sim_width=int(width),
        sim_height=int(height),
        sim_fps=settings.sim_camera_fps,
        sim_day_seconds=settings.sim_camera_day_seconds,
        privacy_masks_file=settings.privacy_masks_file or _default_masks_file(),
        thumbnail_history_hours=settings.thumbnail_history_hours,
        thumbnail_history_every_s=settings.thumbnail_history_every_seconds,
    )


def _default_masks_file() -> Path | None:
    """The project's masks file when it exists (a file named by IOC_PRIVACY_MASKS_FILE must
    exist: checked when it is read)."""
    return DEFAULT_MASKS_FILE if DEFAULT_MASKS_FILE.is_file() else None
