"""Small network probes for ``ioc doctor``: a TCP port, an MQTT login, the cameras' servers."""

from __future__ import annotations

import os
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

RTSP_DEFAULT_PORT = 554


def port_open(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def camera_endpoints(urls: list[str], base_url: str | None) -> list[tuple[str, int]]:
    """Distinct (host, port) of the cameras' RTSP URLs and of IOC_RTSP_BASE_URL, in order."""
    seen: list[tuple[str, int]] = []
    for url in [*(u for u in urls if u), *([base_url] if base_url else [])]:
        parts = urlsplit(url)
        if parts.hostname is None:
            continue
        try:
            endpoint = (parts.hostname, parts.port or RTSP_DEFAULT_PORT)
        except ValueError:  # a port that is not a number
            continue
        if endpoint not in seen:
            seen.append(endpoint)
    return seen


def mqtt_login(host: str, port: int, user: str, password: str, timeout: float) -> str:
    """Log in (MQTT v5, clean start, nothing subscribed) and leave. Returns "ok",
    "refused:<reason>" when the broker answered no, or why it could not be asked."""
    answer: dict[str, str] = {}

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        answer["rc"] = f"refused:{rc}" if rc.is_failure else "ok"

    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"ioc-doctor-{socket.gethostname()}-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    client.username_pw_set(user, password)
    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=10, clean_start=True)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    deadline = time.monotonic() + timeout
    while "rc" not in answer and time.monotonic() < deadline:
        if client.loop(timeout=0.1) not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_AGAIN):
            break  # the broker closed the connection (a refusal was read just before, if any)
    outcome = answer.get("rc", "the broker did not answer the login")
    client.disconnect()
    client.loop(timeout=0.1)  # sends DISCONNECT and closes the socket, when there still is one
    return outcome
