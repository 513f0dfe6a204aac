"""Thousands of MQTT client identities in one thread: paho's external-loop API on one epoll.

paho's own ``loop_start()`` runs one network thread per client, which does not scale to a
fleet of 10,000 sensors. Here every client registers its socket with one selector through the
``on_socket_open/close/register_write/unregister_write`` callbacks (as aiomqtt and paho's
``examples/loop_select.py`` do), and one thread calls ``loop_read``/``loop_write`` when a
socket is ready and ``loop_misc`` (keepalive pings) about once a second per client. Every
paho call happens on that thread, so no locks are needed around the clients or the callers'
state, and a callback must never block.

:class:`DeviceLink` is one field device: its own client id, a retained availability topic with
``offline`` as its Last Will, reconnect with capped backoff, and a bounded outbox that keeps
readings while the link is down and sends them, in order, after ``online`` (store-and-forward).
"""

from __future__ import annotations

import heapq
import itertools
import random
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion

from ioc.mqtt_logins import device_password

log = structlog.get_logger("simulators.mqtt_pool")
READ, WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
MISC_EVERY_S = 1.0


@dataclass
class PoolStats:
    connects: int = 0
    connect_errors: int = 0
    disconnects: int = 0
    published: int = 0
    buffered: int = 0  # readings that went through an outbox (link was down)
    dropped: int = 0  # readings lost because an outbox was full
    online: int = 0
    last_error: str = ""


class ClientPool:
    """Drives many paho clients from the calling thread. Not thread-safe by design."""

    def __init__(self, *, connect_rate: float = 1000.0) -> None:
        self._sel = selectors.DefaultSelector()
        self._clients: list[mqtt.Client] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._connect_gap = 1.0 / connect_rate if connect_rate > 0 else 0.0
        self._next_connect = 0.0
        self._misc_cursor = 0
        self._want: dict[mqtt.Client, Any] = {}  # clients with bytes to send, not yet tried
        self._writing: set[mqtt.Client] = set()  # clients waiting for EVENT_WRITE
        self._misc_at = time.monotonic()
        self.stats = PoolStats()

    def attach(self, client: mqtt.Client) -> None:
        client.on_socket_open = self._on_open
        client.on_socket_close = self._on_close
        client.on_socket_register_write = self._on_want_write
        client.on_socket_unregister_write = self._on_no_write
        self._clients.append(client)

    def call_at(self, when: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the pool thread at monotonic time ``when``."""
        heapq.heappush(self._timers, (when, next(self._seq), fn))

    def connect_slot(self) -> float:
        """When the next new connection may be opened: connects are paced so a fleet does not
        overflow the broker's listen backlog (a dropped SYN would stall this thread ~1 s)."""
        now = time.monotonic()
        self._next_connect = max(now, self._next_connect + self._connect_gap)
        return self._next_connect

    def connect_failed(self, reason: str) -> None:
        """Count a failed connect; log each new reason once (a fleet repeats it 10,000 times)."""
        self.stats.connect_errors += 1
        if reason != self.stats.last_error:
            self.stats.last_error = reason
            log.warning("sensor cannot connect; retrying with backoff", reason=reason)

    def open_sockets(self) -> int:
        return len(self._sel.get_map())

    # ---------------------------------------------------------------- paho socket callbacks ---

    def _on_open(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._sel.register(sock, READ, client)

    def _on_close(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._want.pop(client, None)
        self._writing.discard(client)
        try:
            self._sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _on_want_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        # Sockets are nearly always writable: try the write on this pass (_flush) and wait for
        # EVENT_WRITE only when the kernel buffer is full. Saves two epoll changes per message.
        self._want[client] = sock

    def _on_no_write(self, client: mqtt.Client, _ud: Any, sock: Any) -> None:
        self._want.pop(client, None)
        if client in self._writing:
            self._writing.discard(client)
            self._watch(sock, client, READ)

    def _watch(self, sock: Any, client: mqtt.Client, events: int) -> None:
        try:
            self._sel.modify(sock, events, client)
        except (KeyError, ValueError):
            pass

    def _flush(self) -> None:
        while self._want:
            pending, self._want = self._want, {}
            for client, sock in pending.items():
                if client.socket() is not sock:
                    continue
                client.loop_write()  # calls _on_no_write when all is sent
                if client.socket() is sock and client.want_write():
                    self._want.pop(client, None)
                    self._writing.add(client)
                    self._watch(sock, client, READ | WRITE)

    # ----------------------------------------------------------------------------- the loop ---

    def run_once(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for socket events or the next timer, then handle them."""
        self._flush()
        now = time.monotonic()
        if self._timers:
            timeout = min(timeout, max(0.0, self._timers[0][0] - now))
        for key, mask in self._sel.select(timeout):
            client: mqtt.Client = key.data
            if mask & READ:
                client.loop_read()
            if mask & WRITE and client.socket() is key.fileobj:
                client.loop_write()
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            _, _, fn = heapq.heappop(self._timers)
            fn()
        self._misc(now)
        self._flush()

    def _misc(self, now: float) -> None:
        """``loop_misc`` for every client about once a second, a slice per pass."""
        if not self._clients:
            return
        share = int(len(self._clients) * (now - self._misc_at) / MISC_EVERY_S)
        if share <= 0:
            return
        self._misc_at = now
        for _ in range(min(share, len(self._clients))):
            self._misc_cursor = (self._misc_cursor + 1) % len(self._clients)
            client = self._clients[self._misc_cursor]
            if client.socket() is not None:
                client.loop_misc()

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                return False
            self.run_once(0.02)
        return True

    def close(self) -> None:
        self._sel.close()


@dataclass
class LinkConfig:
    host: str
    port: int
    username: str  # tool clients (the simulator's control listener); devices: see device_secret
    password: str = field(repr=False)
    keepalive: int = 60
    max_buffer: int = 600  # readings kept per device while its link is down
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    # Set: every device logs in as its own id with the password derived from this secret
    # (ioc.mqtt_logins.device_password), as a field device does. None: devices share the
    # login above (benches and tests that are not about logins).
    device_secret: str | None = field(default=None, repr=False)

    def for_device(self, device_id: str) -> LinkConfig:
        """The config a device's own session uses."""
        if self.device_secret is None:
            return self
        return replace(
            self, username=device_id, password=device_password(self.device_secret, device_id)
        )


@dataclass
class DeviceLink:
    """One device's own MQTT session, driven by a :class:`ClientPool`."""

    pool: ClientPool
    client_id: str
    availability_topic: str | None  # None: no availability and no Last Will (a tool client)
    config: LinkConfig
    on_message: Callable[[mqtt.MQTTMessage], None] | None = None
    subscriptions: tuple[str, ...] = ()
    connected: bool = False
    held: bool = False  # kept offline on purpose (store-and-forward fault)
    closing: bool = False
    outbox: deque[tuple[str, bytes]] = field(default_factory=deque)
    _backoff: float = 0.0
    _connecting: bool = False

    def __post_init__(self) -> None:
        c = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        c.username_pw_set(self.config.username, self.config.password)
        if self.availability_topic is not None:
            c.will_set(self.availability_topic, b"offline", qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        if self.on_message is not None:
            handler = self.on_message
            c.on_message = lambda _c, _u, msg: handler(msg)
        c.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
        self.client = c
        self.pool.attach(c)

    def start(self) -> None:
        self._schedule_connect(0.0)

    def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1. While the link is down the reading waits in the outbox (oldest dropped first
        when it is full, and counted)."""
        stats = self.pool.stats
        if self.connected and not self.held:
            self.client.publish(topic, payload, qos=1)
            stats.published += 1
            return
        if len(self.outbox) >= self.config.max_buffer:
            self.outbox.popleft()
            stats.dropped += 1
        self.outbox.append((topic, payload))
        stats.buffered += 1

    def drop(self) -> None:
        """Lose the connection abruptly (no DISCONNECT): the broker publishes the Last Will.
        Stays down until :meth:`release`."""
        self.held = True
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.client.loop_read()  # paho sees the EOF now and closes its side

    def release(self) -> None:
        self.held = False
        if not self.connected:
            self._backoff = 0.0
            self._schedule_connect(0.0)

    def close(self) -> None:
        """Orderly goodbye: retained ``offline``, then DISCONNECT (so no Last Will)."""
        self.closing = True
        if self.connected and self.availability_topic is not None:
            self.client.publish(self.availability_topic, b"offline", qos=1, retain=True)
        if self.client.socket() is not None:
            self.client.disconnect()

    @property
    def closed(self) -> bool:
        return self.client.socket() is None

    # ------------------------------------------------------------------------ connection ---

    def _schedule_connect(self, delay: float) -> None:
        if self._connecting:
            return
        self._connecting = True
        when = max(time.monotonic() + delay, self.pool.connect_slot())
        self.pool.call_at(when, self._connect)

    def _connect(self) -> None:
        self._connecting = False
        if self.held or self.closing or self.connected:
            return
        try:
            self.client.reconnect()
        except OSError as exc:
            self.pool.connect_failed(
                f"{exc.strerror or exc} ({self.config.host}:{self.config.port})"
            )
            self._retry()

    def _retry(self) -> None:
        self._backoff = min(
            self.config.backoff_max_s, max(self.config.backoff_min_s, self._backoff * 2)
        )
        self._schedule_connect(self._backoff * random.uniform(0.5, 1.0))  # noqa: S311

    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            hint = ""
            if rc.value in (134, 135):  # bad user name or password / not authorized
                hint = " (is the device registered and its login synced to the broker?"
                hint += " `ioc seed` or `ioc mqtt sync-logins`)"
            self.pool.connect_failed(f"broker refused: {rc}{hint}")
            return  # the broker closes the socket; _on_disconnect schedules the retry
        if self.closing:
            c.disconnect()  # connected just as we were stopping
            return
        self.connected = True
        self._backoff = 0.0
        self.pool.stats.connects += 1
        self.pool.stats.online += 1
        for topic in self.subscriptions:
            c.subscribe(topic, qos=1)
        if self.availability_topic is not None:
            c.publish(self.availability_topic, b"online", qos=1, retain=True)
        while self.outbox and not self.held:
            topic, payload = self.outbox.popleft()
            c.publish(topic, payload, qos=1)
            self.pool.stats.published += 1

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _rc: Any, _p: Any) -> None:
        if self.connected:
            self.pool.stats.online -= 1
            self.pool.stats.disconnects += 1
        self.connected = False
        if not self.held and not self.closing:
            self._retry()
