"""Camera settings read from the environment (until they move into ``ioc.config.Settings``).

IOC_RTSP_USER, IOC_RTSP_PASSWORD      the cameras' login (simulator and workers)
IOC_RTSP_BASE_URL                     where the seeded cameras live (no credentials)
IOC_RTSP_CONTROL_PORT                 the camera simulator's control endpoint
IOC_CAMERA_WORKER_ID, IOC_CAMERA_POOL  who this worker is, which cameras it may lease
IOC_CAMERA_LEASE_SECONDS, IOC_CAMERA_HEALTH_SECONDS, IOC_CAMERA_THUMBNAIL_SECONDS
IOC_SIM_CAMERAS, IOC_SIM_CAMERA_SIZE, IOC_SIM_CAMERA_FPS, IOC_SIM_CAMERA_DAY_SECONDS
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ioc.config import DEV_SECRET, Settings


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
    )
