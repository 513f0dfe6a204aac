"""The camera simulator's pure parts: command line, day/night curve, scenes, settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ingest.rtsp.config import camera_settings
from ioc.config import SECRET_FIELDS, Settings
from simulators.cameras import control, gst_server, pipeline, scene


def test_the_password_travels_in_the_environment_never_in_argv(tmp_path: Path) -> None:
    cfg = control.SimulatorConfig(port=1, control_port=2, cameras=2, password="s3cret-pw")
    argv, env = control.prepare(cfg, tmp_path)
    assert not any("s3cret-pw" in a for a in argv)
    assert env["IOC_RTSP_PASSWORD"] == "s3cret-pw"
    args = pipeline.parse_args(argv[2:])
    assert (args.port, args.cameras, args.fps) == (1, 2, 15)
    assert len(list((tmp_path / "cameras").glob("bg*.png"))) == 2


def test_a_simulator_without_a_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="password"):
        control.prepare(control.SimulatorConfig(port=1, control_port=2), tmp_path)


def test_every_camera_pipeline_has_the_elements_faults_switch(tmp_path: Path) -> None:
    args = pipeline.parse_args(["--port=1", "--control-port=2", f"--backgrounds={tmp_path}"])
    launch = pipeline.launch_string(args, 3)
    for name in ("name=mix", "name=bal", "name=blurcaps", "name=enc", "name=valve", "name=pay0"):
        assert name in launch
    assert "bg3-640x360-58.png" in launch and "framerate=15/1" in launch


def test_control_client_knows_exactly_the_servers_faults() -> None:
    assert control.FAULTS == gst_server.FAULTS
    assert len(set(gst_server.FAULTS)) == 10
    with pytest.raises(ValueError, match="unknown fault"):
        control.SimulatorControl(1).set_fault(1, "smoke")


def test_nights_are_darker_and_flatter_but_never_black() -> None:
    noon = pipeline.balance_for(pipeline.daylight(0.5 * 600, 600, 0.0))
    midnight = pipeline.balance_for(pipeline.daylight(0.0, 600, 0.0))
    assert noon == pytest.approx((0.0, 1.0))
    assert midnight[0] < 0 and 0.5 < midnight[1] < 1.0


def test_scenes_are_deterministic_distinct_and_wider_than_the_frame() -> None:
    a = scene.render_background(1, 320, 180)
    assert a.shape == (180, scene.background_size(320, 180)[0], 3) and a.shape[1] > 320
    np.testing.assert_array_equal(a, scene.render_background(1, 320, 180))
    assert np.abs(a.astype(int) - scene.render_background(2, 320, 180)).mean() > 10


def test_camera_settings_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOC_SIM_CAMERA_SIZE", "320X180")
    monkeypatch.setenv("IOC_RTSP_USER", "viewer")
    monkeypatch.setenv("IOC_CAMERA_LEASE_SECONDS", "20")
    monkeypatch.setenv("IOC_CAMERA_WORKER_ID", "")
    for name in ("IOC_RTSP_BASE_URL", "IOC_RTSP_CONTROL_PORT"):
        monkeypatch.delenv(name, raising=False)
    cs = camera_settings(Settings(_env_file=None, rtsp_port=1554))  # type: ignore[call-arg]
    assert (cs.sim_width, cs.sim_height, cs.rtsp_user, cs.lease_s) == (320, 180, "viewer", 20)
    assert cs.rtsp_base_url == "rtsp://127.0.0.1:1554" and cs.control_port == 1555
    assert cs.worker_id is None
    for name, bad, says in (
        ("IOC_SIM_CAMERA_SIZE", "big", "IOC_SIM_CAMERA_SIZE must look like 640x360"),
        ("IOC_CAMERA_LEASE_SECONDS", "0", "IOC_CAMERA_LEASE_SECONDS must be more than 0"),
        ("IOC_CAMERA_HEALTH_SECONDS", "soon", "IOC_CAMERA_HEALTH_SECONDS must be a number of"),
    ):
        with monkeypatch.context() as m, pytest.raises(ValueError, match=says):
            m.setenv(name, bad)
            Settings(_env_file=None)  # type: ignore[call-arg]


def test_the_camera_password_is_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "rtsp-password"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("IOC_RTSP_PASSWORD_FILE", str(secret))
    assert camera_settings(Settings(_env_file=None)).rtsp_password == "from-a-file"  # type: ignore[call-arg]
    monkeypatch.delenv("IOC_RTSP_PASSWORD_FILE")
    # Production: the other roles need no camera password; the camera roles refuse the default.
    prod = Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="production",
        **{name: "x" * 40 for name in SECRET_FIELDS},
    )
    with pytest.raises(ValueError, match="IOC_RTSP_PASSWORD still has the development default"):
        camera_settings(prod, logs_in=True)
    assert camera_settings(prod.model_copy(update={"rtsp_password": "p" * 12}), logs_in=True)
    # Seeding cameras and the privacy commands log in to no camera: no password needed.
    assert camera_settings(prod).rtsp_base_url


def test_a_camera_worker_with_the_default_password_says_why_it_stops(tmp_path: Path) -> None:
    """The CLI prints the reason and exits 2, as for any known misconfiguration; it is not
    reported as an unexpected error. (A process of its own: the CLI configures logging.)"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env |= {f"IOC_{name.upper()}": "x" * 40 for name in SECRET_FIELDS}
    env |= {
        "IOC_ENVIRONMENT": "production",
        "IOC_ALLOWED_ORIGINS": '["https://ioc.example.vn"]',
        "IOC_STATE_DIR": str(tmp_path),
    }
    r = subprocess.run(
        [sys.executable, "-m", "ioc.cli", "ingest", "rtsp"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2, r.stderr
    assert "IOC_RTSP_PASSWORD still has the development default" in r.stderr
    assert "unexpected" not in r.stderr
