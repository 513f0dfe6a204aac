"""The one place paho-mqtt lives. Its network thread hands messages to asyncio through one
bounded queue (``loop.call_soon_threadsafe``); nothing else crosses the thread boundary.

Acknowledgements are manual: the worker calls :meth:`MqttSource.ack` only after the batch holding
a message is committed. Flow control is the broker's: MQTT v5 Receive Maximum caps how many
unacknowledged messages it sends us, so when the database stalls we stop acknowledging, the
broker stops sending, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = structlog.get_logger("ingest.mqtt.source")


class MqttUnavailable(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # connection it arrived on: a packet id means nothing on another one
    received: float


class MqttSource:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        topic_filter: str,
        receive_maximum: int = 1000,
        session_expiry_s: int = 3600,
    ) -> None:
        self.topic_filter = topic_filter
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue(maxsize=receive_maximum * 2)
        self.overflow = 0
        self.connected = asyncio.Event()
        self._host, self._port = host, port
        self._receive_maximum = receive_maximum
        self._session_expiry_s = session_expiry_s
        self._generation = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail
        self._refused: str | None = None
        self._attempted = asyncio.Event()  # set after the first attempt, good or bad

    # --- paho network thread -------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            log.error("mqtt connect refused", reason=str(rc))
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._attempted.set)
            return
        self._refused = None
        # Resubscribe after every (re)connect, even with a resumed session: cheap and safe.
        client.subscribe(self.topic_filter, qos=1)
        log.info("mqtt connected", topic=self.topic_filter)
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.connected.set)
        self._loop.call_soon_threadsafe(self._attempted.set)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        self._refused = "connection refused or unreachable"
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._attempted.set)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with self._lock:
            self._generation += 1
        log.warning("mqtt disconnected", reason=str(rc))
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.connected.clear)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        delivery = Delivery(
            msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._generation, time.monotonic()
        )
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._enqueue, delivery)

    # --- asyncio side ----------------------------------------------------------------------
    def _enqueue(self, delivery: Delivery) -> None:
        try:
            self.queue.put_nowait(delivery)
        except asyncio.QueueFull:
            # Cannot happen while Receive Maximum <= queue size; if it ever does, the message
            # stays unacknowledged and the broker redelivers it when the session resumes.
            self.overflow += 1
            log.error("ingest queue overflow: message left unacknowledged", topic=delivery.topic)

    def ack(self, deliveries: list[Delivery]) -> int:
        """Acknowledge committed messages; skips those from an older connection. Returns count."""
        sent = 0
        with self._lock:
            for d in deliveries:
                if d.qos > 0 and d.generation == self._generation:
                    self._client.ack(d.mid, d.qos)
                    sent += 1
        return sent

    async def start(self, *, connect_timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        try:
            self._client.connect_async(
                self._host, self._port, keepalive=30, clean_start=False, properties=props
            )
        except OSError as exc:
            raise MqttUnavailable(self._hint(str(exc))) from None
        self._client.loop_start()
        try:
            await asyncio.wait_for(self._attempted.wait(), connect_timeout)
        except TimeoutError:
            pass
        if not self.connected.is_set():
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
            raise MqttUnavailable(self._hint(self._refused or "no answer"))

    def _hint(self, why: str) -> str:
        return (
            f"cannot connect to the MQTT broker at {self._host}:{self._port} ({why}); "
            "start it with `ioc services up` or check IOC_MQTT_PORT and the ingest credentials"
        )

    async def stop(self) -> None:
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
