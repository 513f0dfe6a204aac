"""One MQTT client for the tools (record, replay, scenario runner), logged in as the simulator
(``IOC_MQTT_SIM_USER``: read and write on ``ioc/#``).

paho's network thread runs the client (``loop_start``); callers only publish (thread-safe in
paho) and hand received messages over through the one queue the recorder owns.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ioc.config import Settings


class MqttUnreachable(ConnectionRefusedError):
    """No broker, or it refused the login: the message says which and what to do."""


def client_id(role: str) -> str:
    """Unique per client: several runners in one process must not take over each other."""
    return f"ioc-{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


def connect(
    settings: Settings,
    role: str,
    *,
    on_message: Callable[[mqtt.MQTTMessage], None] | None = None,
    subscribe: list[tuple[str, Any]] | None = None,
    timeout: float = 10.0,
) -> mqtt.Client:
    """A connected MQTT v5 client (clean start) with its network thread running; subscribed to
    ``subscribe`` (topic, options) after every (re)connect. Returns once the broker has
    acknowledged the login and the first subscription."""
    c = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id(role),
        protocol=mqtt.MQTTv5,
    )
    c.username_pw_set(settings.mqtt_sim_user, settings.mqtt_sim_password)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    done = threading.Event()
    outcome: list[str] = []

    def on_connect(client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            outcome.append(str(rc))
            done.set()
        elif subscribe:
            client.subscribe(subscribe)
        else:
            done.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _m: Any, codes: Any, _p: Any) -> None:
        refused = [str(rc) for rc in codes if rc.is_failure]
        if refused:
            outcome.append(f"subscription refused: {refused[0]}")
        done.set()

    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    if on_message is not None:
        handler = on_message
        c.on_message = lambda _c, _u, msg: handler(msg)
    where = f"{settings.mqtt_host}:{settings.mqtt_port}"
    try:
        c.connect(settings.mqtt_host, settings.mqtt_port, keepalive=30, clean_start=True)
    except OSError as exc:
        raise MqttUnreachable(
            f"no MQTT broker at {where} ({exc.strerror or exc}): start it with `ioc services up`"
            " or check IOC_MQTT_HOST / IOC_MQTT_PORT"
        ) from None
    c.loop_start()
    if not done.wait(timeout) or outcome:
        c.loop_stop()
        c.disconnect()
        why = outcome[0] if outcome else f"no answer within {timeout:.0f} s"
        raise MqttUnreachable(
            f"the MQTT broker at {where} refused {settings.mqtt_sim_user} ({why}): check"
            " IOC_MQTT_SIM_USER / IOC_MQTT_SIM_PASSWORD"
        )
    return c


def close(
    c: mqtt.Client, pending: Iterable[mqtt.MQTTMessageInfo] = (), flush_s: float = 10.0
) -> int:
    """Wait (up to ``flush_s``) until the broker has acknowledged every ``pending`` QoS 1
    publish, then disconnect. Returns how many were still unacknowledged."""
    deadline = time.monotonic() + flush_s
    left = [i for i in pending if not i.is_published()]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [i for i in left if not i.is_published()]
    c.disconnect()
    c.loop_stop()
    return len(left)
