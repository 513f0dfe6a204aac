"""The provisioned platform pieces the later stages build on (RTSP simulator, browser)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration

GST_CHECK = """
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import Gst, GstRtspServer
Gst.init(None)
missing = [e for e in ("videotestsrc", "x264enc", "rtph264pay", "videoconvert")
           if Gst.ElementFactory.find(e) is None]
assert not missing, missing
print(GstRtspServer.RTSPServer.__name__)
"""


def test_gstreamer_rtsp_server_is_available_to_system_python() -> None:
    out = subprocess.run(
        ["/usr/bin/python3", "-c", GST_CHECK], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "RTSPServer" in out.stdout


def test_chromium_is_installed() -> None:
    assert shutil.which("chromium") or shutil.which("/usr/bin/chromium")
