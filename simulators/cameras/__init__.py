"""Simulated RTSP cameras: a GStreamer RTSP server with faults switchable live per camera.

``gst_server`` is the server process (Debian's python3 + python3-gi); ``control`` starts it and
switches its faults; ``scene`` renders each camera's street scene. See docs/cameras.md.
"""
