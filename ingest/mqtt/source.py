"""The one place paho-mqtt lives. Its network loop runs in one thread of ours and hands messages
to asyncio through one queue (``loop.call_soon_threadsafe``); nothing else crosses the boundary.

Acknowledgements are manual: the worker calls :meth:`MqttSource.ack` only after the batch holding
a message is committed. Flow control is ours, not the broker's: Mosquitto 2.0 sends past a
client's MQTT v5 Receive Maximum once acknowledgements flow (measured: ~5x), so the network loop
simply stops reading the socket while ``max_outstanding`` messages are received but not yet
acknowledged. The broker then keeps the rest (in the session, on disk), memory stays bounded,
and nothing is dropped. A paused loop still reads now and then so keepalive answers get through.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqtt import metrics as m

log = structlog.get_logger("ingest.mqtt.source")

PAUSED_READ_EVERY_S = 1.0
READ_BURST = 256  # packets read per wake-up before handing them to asyncio


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
    retained: bool = False  # a retained message handed over on subscribe (a last known state)


class MqttSource:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        password: str,
        client_id: str,
        topic_filters: list[str],
        receive_maximum: int = 1000,
        max_outstanding: int | None = None,
        session_expiry_s: int = 3600,
        keepalive_s: int = 30,
    ) -> None:
        self.topic_filters = topic_filters
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.connected = asyncio.Event()
        self.paused_reads = 0  # times the loop stopped reading because of the backlog
        self._host, self._port, self._keepalive = host, port, keepalive_s
        self._receive_maximum = receive_maximum
        self._max_outstanding = max_outstanding or receive_maximum * 2
        self._session_expiry_s = session_expiry_s
        self._generation = 0
        self._outstanding = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._attempted = threading.Event()  # set after the first attempt, good or bad
        self._refused: str | None = None
        self._pending: list[Delivery] = []  # network thread only
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_socket_register_write = self._wake
        self._client = c

    @property
    def outstanding(self) -> int:
        return self._outstanding

    # --- network thread ----------------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            self._refused = str(rc)
            log.error("mqtt connect refused", reason=str(rc))
            self._attempted.set()
            return
        self._refused = None
        # Resubscribe after every (re)connect, even with a resumed session: cheap and safe.
        client.subscribe([(f, 1) for f in self.topic_filters])
        log.info("mqtt connected", topics=self.topic_filters)
        self._attempted.set()
        self._call(self.connected.set)
        m.CONNECTED.set(1)

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        with self._lock:
            self._generation += 1
        log.warning("mqtt disconnected", reason=str(rc))
        self._call(self.connected.clear)
        m.CONNECTED.set(0)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        delivery = Delivery(
            msg.topic,
            bytes(msg.payload),
            msg.mid,
            msg.qos,
            self._generation,
            time.monotonic(),
            bool(msg.retain),
        )
        with self._lock:
            self._outstanding += 1
        self._pending.append(delivery)  # handed over in one call per read burst

    def _hand_over(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._call(self._enqueue_many, batch)

    def _enqueue_many(self, batch: list[Delivery]) -> None:
        for d in batch:
            self.queue.put_nowait(d)

    def _call(self, fn: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _wake(self, *_: Any) -> None:
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, OSError):
            pass

    def _connect_once(self, first: bool) -> bool:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self._session_expiry_s
        props.ReceiveMaximum = self._receive_maximum
        try:
            if first:
                self._client.connect(
                    self._host, self._port, self._keepalive, clean_start=False, properties=props
                )
            else:
                self._client.reconnect()
            return True
        except OSError as exc:
            self._refused = exc.strerror or str(exc)
            self._attempted.set()
            return False

    def _network(self) -> None:
        c = self._client
        backoff, first, last_read = 0.2, True, 0.0
        while not self._stop.is_set():
            sock = c.socket()
            if sock is None:
                if not first:
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                if self._stop.is_set() or not self._connect_once(first):
                    first = False
                    continue
                first, backoff = False, 0.2
                continue
            now = time.monotonic()
            paused = self._outstanding >= self._max_outstanding
            rlist: list[Any] = [self._wake_r]
            if not paused or now - last_read > PAUSED_READ_EVERY_S:
                rlist.append(sock)
            elif paused:
                self.paused_reads += 1
            wlist = [sock] if c.want_write() else []
            try:
                readable, writable, _ = select.select(rlist, wlist, [], 0.2)
            except (OSError, ValueError):
                readable, writable = [], []
            if self._wake_r in readable:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except (BlockingIOError, OSError):
                    pass
            if sock in readable:
                last_read = now
                # Read what the socket already holds (up to a burst), then wake asyncio once.
                for _ in range(READ_BURST):
                    if c.loop_read() != mqtt.MQTT_ERR_SUCCESS or c.socket() is None:
                        break
                    if self._outstanding >= self._max_outstanding:
                        break
                    more, _, _ = select.select([sock], [], [], 0)
                    if not more:
                        break
                self._hand_over()
            if c.socket() is not None and (sock in writable or c.want_write()):
                c.loop_write()
            if c.socket() is not None:
                c.loop_misc()
        if c.socket() is not None:
            c.disconnect()
            for _ in range(20):  # flush the DISCONNECT
                if c.socket() is None or not c.want_write():
                    break
                c.loop_write()

    # --- asyncio side ----------------------------------------------------------------------
    def ack(self, deliveries: list[Delivery]) -> int:
        """Acknowledge committed messages; skips those from an older connection. Returns count."""
        sent = 0
        with self._lock:
            for d in deliveries:
                if d.qos > 0 and d.generation == self._generation:
                    self._client.ack(d.mid, d.qos)
                    sent += 1
            self._outstanding -= len(deliveries)
        return sent

    async def start(self, *, connect_timeout: float = 10.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._network, name="mqtt-network", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._attempted.wait, connect_timeout)
        try:
            await asyncio.wait_for(self.connected.wait(), 0.5)
        except TimeoutError:
            await self.stop()
            raise MqttUnavailable(self._hint(self._refused or "no answer")) from None

    def _hint(self, why: str) -> str:
        return (
            f"cannot connect to the MQTT broker at {self._host}:{self._port} ({why}); "
            "start it with `ioc services up` or check IOC_MQTT_PORT and the ingest credentials"
        )

    async def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self._wake_r.close()
        self._wake_w.close()
