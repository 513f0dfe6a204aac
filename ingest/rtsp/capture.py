"""One supervised capture per camera: a thread that opens the stream, counts every frame,
decodes and analyses about one a second, and reconnects with capped, jittered backoff when
anything fails.

The stream is read with PyAV (FFmpeg), packet by packet: every packet counts towards the fps,
but only the frames a health sample needs are decoded (``sampling.SamplePlan``: usually just
the keyframes). OpenCV's capture cannot do that: its ``grab()`` decodes every frame, which made
health cost as much as a viewer (docs/cameras.md, "Cost").

Every blocking call has a timeout (the open and each read, as PLATFORM.md says: without one a
hung server blocks a read for ~90 s), so ``stop()`` is honoured within a few seconds. A camera
whose last attempt failed is asked first with our own RTSP DESCRIBE (``probe``): when that says
the open cannot succeed (refused, 401, 404, no answer) the open is skipped. The thread catches
everything, counts it, backs off and tries again; opens are capped per minute so a camera that
fails instantly is not hammered. The URL with credentials lives only in this object and is
never logged (FFmpeg's errors carry it: they are classified, never printed): logs and reasons
carry ``safe_url``.

Only this thread touches its container and decoder; the worker reads results through
``snapshot()`` under the lock, so nothing else crosses the thread boundary.

Privacy masks (``ioc.domain.privacy``) are applied to the thumbnail before it is encoded, so the
masked pixels never leave this thread; health is measured on the whole frame, in memory. The
mask is rasterised once per picture size, on the first thumbnail.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import av
import cv2
import numpy as np
import structlog
from av.container import InputContainer

from ingest.rtsp import metrics as m
from ingest.rtsp import probe
from ingest.rtsp.sampling import SamplePlan
from ingest.rtsp.tracker import HealthTracker
from ioc.domain.camera import (
    ANALYSIS_H,
    ANALYSIS_W,
    Baseline,
    Reason,
    Transition,
    backoff_delay,
    frame_stats,
)
from ioc.domain.privacy import Mask, apply_mask, image_mask, rasterise
from ioc.logs import redact

log = structlog.get_logger("ingest.rtsp.capture")

# RTSP over TCP (interleaved): no lost UDP packets, one socket per camera. One second of stream
# analysis is enough to open (the SDP carries the H.264 parameters); FFmpeg's default analyses
# until the open timeout cuts it short, which made every (re)connect cost the whole timeout.
STREAM_OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000"}
# Quiet FFmpeg (PyAV's default; said again so no import elsewhere turns it on for us): its
# messages can name the URL, and we report failures ourselves.
av.logging.set_level(None)


@dataclass(frozen=True)
class CaptureOptions:
    open_timeout_s: float = 3.0
    read_timeout_s: float = 1.0
    sample_interval_s: float = 1.0  # analyse a picture a second: every check needs no more
    arrivals_every_s: float = 0.25  # hand frame arrivals (the fps) to the tracker this often
    thumbnail_interval_s: float = 5.0
    thumbnail_quality: int = 70
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    stable_session_s: float = 1.0  # a session this long resets the backoff
    max_opens_per_minute: int = 30
    probe_timeout_s: float = 2.0
    decoder_threads: int = 1  # at camera resolutions one thread per stream decodes cheapest


def with_credentials(url: str, user: str | None, password: str | None) -> str:
    if not user:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{quote(user, safe='')}:{quote(password or '', safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def open_stream(url: str, options: CaptureOptions) -> InputContainer:
    """The one way this project opens a stream. Raises ``av.FFmpegError`` (its message carries
    the URL: never log it) or ``OSError`` when it cannot be opened, ``IndexError`` when it has
    no video."""
    container = av.open(
        url, container_options=STREAM_OPTIONS,
        timeout=(options.open_timeout_s, options.read_timeout_s),
    )  # fmt: skip
    try:
        codec = container.streams.video[0].codec_context
        codec.thread_count = options.decoder_threads
    except BaseException:
        container.close()
        raise
    return container


@dataclass
class Snapshot:
    device_id: str
    status: str
    reasons: list[dict[str, Any]]
    metrics: dict[str, Any]
    transitions: list[Transition]
    last_frame: datetime | None
    thumbnail: tuple[bytes, datetime, int, int] | None = None
    baseline: Baseline | None = None
    counters: dict[str, int] = field(default_factory=dict)


class CameraCapture:
    def __init__(
        self,
        device_id: str,
        url: str,
        *,
        user: str | None,
        password: str | None,
        tracker: HealthTracker,
        options: CaptureOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        privacy: Sequence[Sequence[tuple[float, float]]] = (),
    ) -> None:
        self.device_id = device_id
        self.safe_url = redact(url)
        self._url = url
        self._user, self._password = user, password
        self._auth_url = with_credentials(url, user, password)
        self.tracker = tracker
        self.options = options or CaptureOptions()
        self.clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thumb: tuple[bytes, datetime, int, int] | None = None
        self._last_frame_wall: datetime | None = None
        self.counters = {
            "opens": 0, "open_failures": 0, "sessions": 0, "frames": 0, "decoded": 0, "errors": 0,
        }  # fmt: skip
        self._failing = False  # did the last attempt fail? then probe before opening
        self.privacy = tuple(tuple(p) for p in privacy)  # polygons, normalised 0..1
        self._masks: dict[tuple[int, ...], Mask] = {}  # picture shape -> mask

    # ----------------------------------------------------------------- ownership ---
    def start(self) -> CameraCapture:
        self._thread = threading.Thread(
            target=self._run, name=f"capture-{self.device_id}", daemon=True
        )
        self._thread.start()
        return self

    def restarted(self) -> CameraCapture:
        """A new thread for this camera, keeping what its tracker has learned."""
        again = CameraCapture(
            self.device_id, self._url, user=self._user, password=self._password,
            tracker=self.tracker, options=self.options, clock=self.clock, rng=self._rng,
            privacy=self.privacy,
        )  # fmt: skip
        again.counters = self.counters
        return again.start()

    def stop(self) -> None:
        """Ask the thread to end; it does within the open or read timeout."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------------- results ---
    def snapshot(self) -> Snapshot:
        now = self.clock()
        with self._lock:
            t = self.tracker
            transitions = []
            change = t.update(now)
            if change is not None:
                transitions.append(change)
            snap = Snapshot(
                device_id=self.device_id,
                status=t.status,
                reasons=[r.to_json() for r in t.debouncer.reasons],
                metrics=t.metrics(now) | {"frames": self.counters["frames"]},
                transitions=transitions,
                last_frame=self._last_frame_wall,
                thumbnail=self._thumb,
                baseline=t.baseline if t.baseline_learned else None,
                counters=dict(self.counters),
            )
            self._thumb = None
            t.baseline_learned = False
        return snap

    # -------------------------------------------------------------------- thread ---
    def _run(self) -> None:
        o = self.options
        attempt = 0
        opens: deque[float] = deque()
        while not self._stop.is_set():
            now = self.clock()
            while opens and now - opens[0] > 60:
                opens.popleft()
            if len(opens) >= o.max_opens_per_minute:  # restart cap
                self._stop.wait(60 - (now - opens[0]))
                continue
            opens.append(now)
            try:
                stable = self._session()
            except Exception as exc:  # a PyAV, OpenCV or numpy surprise: count it, back off, go on
                self.counters["errors"] += 1
                stable = False
                detail = redact(f"{type(exc).__name__}: {exc}")[:200]
                log.warning("capture error", device=self.device_id, error=detail)
                with self._lock:
                    self.tracker.on_failure(self.clock(), Reason("capture_error", detail, 0.8))
            attempt = 0 if stable else attempt + 1
            if self._stop.is_set():
                break
            delay = backoff_delay(
                attempt, base=o.backoff_base_s, cap=o.backoff_cap_s, jitter=self._rng.random()
            )
            self._stop.wait(delay)

    def _session(self) -> bool:
        """Open, read until failure or stop. True when the session was long enough to count
        as a success (the backoff starts over)."""
        o = self.options
        self.counters["opens"] += 1
        if self.counters["opens"] > 1:
            m.RECONNECTS.inc()
        if self._failing:
            reason = probe.classify(self._url, self._user, self._password, o.probe_timeout_s)
            if reason.code in probe.DEFINITE:
                self._failed(reason)
                return False
        started = self.clock()
        try:
            container = open_stream(self._auth_url, o)
        except (av.FFmpegError, OSError, IndexError):  # FFmpeg's text has the URL: not kept
            self._failed(self._why_not_opened(self.clock() - started))
            return False
        try:
            self._failing = False
            self.counters["sessions"] += 1
            with self._lock:
                self.tracker.on_connected(self.clock())
            stable = self._read_loop(container)
            self._failing = not stable
            return stable
        finally:
            container.close()

    def _failed(self, reason: Reason) -> None:
        self._failing = True
        self.counters["open_failures"] += 1
        m.OPEN_FAILURES.labels(reason.code).inc()
        with self._lock:
            self.tracker.on_failure(self.clock(), reason)
        log.info("camera not opened", device=self.device_id, url=self.safe_url,
                 reason=reason.code, detail=reason.detail)  # fmt: skip

    def _why_not_opened(self, elapsed: float) -> Reason:
        if elapsed >= 0.9 * self.options.open_timeout_s:
            return Reason(
                "no_video",
                f"the camera accepted the connection but sent no video within "
                f"{self.options.open_timeout_s:.0f} s",
                0.9,
            )
        return probe.classify(self._url, self._user, self._password, self.options.probe_timeout_s)

    def _read_loop(self, container: InputContainer) -> bool:
        o = self.options
        stream = container.streams.video[0]
        decoder = stream.codec_context
        packets = container.demux(stream)
        opened = last_packet = self.clock()
        plan = SamplePlan(o.sample_interval_s, started=opened)
        frames, decoded, last_thumb, handed = 0, 0, -1e9, opened
        arrivals: list[float] = []  # handed to the tracker a few times a second, not per frame
        while not self._stop.is_set():
            try:
                packet = next(packets)
            except (StopIteration, av.FFmpegError, OSError):  # the end, a timeout, a break
                now = self.clock()
                if now - last_packet >= 0.8 * o.read_timeout_s:
                    reason = Reason("no_video", "the camera stopped sending video", 0.9)
                else:
                    reason = Reason("stream_lost", "the camera closed the stream", 0.9)
                with self._lock:
                    self.tracker.on_frames(arrivals)
                    self.tracker.on_disconnected(now, reason, was_streaming=frames > 0)
                self._count(arrivals, decoded)
                log.info("stream ended", device=self.device_id, reason=reason.code, frames=frames)
                return frames > 0 and now - opened >= o.stable_session_s
            now = last_packet = self.clock()
            if packet.size == 0:  # the demuxer's flush packet: no frame
                continue
            frames += 1
            arrivals.append(now)
            decode, sample = plan.packet(now, packet.is_keyframe)
            pictures = []
            if decode:
                decoded += 1
                try:
                    pictures = decoder.decode(packet)
                except av.FFmpegError:  # a damaged frame: the next keyframe starts afresh
                    pictures = []
            if sample and pictures:
                plan.sampled(now)
                thumb = now - last_thumb >= o.thumbnail_interval_s
                picture = pictures[-1]
                colour = picture.to_ndarray(format="bgr24") if thumb else None
                self._analyse(picture.to_ndarray(format="gray"), now, thumb, arrivals, colour)
                if thumb:
                    last_thumb = now
            elif now - handed >= o.arrivals_every_s:
                with self._lock:
                    self.tracker.on_frames(arrivals)
            else:
                continue
            handed = now
            self._count(arrivals, decoded)
            arrivals, decoded = [], 0
        return True

    def _count(self, arrivals: list[float], decoded: int) -> None:
        self.counters["frames"] += len(arrivals)
        self.counters["decoded"] += decoded
        m.FRAMES.inc(len(arrivals))
        m.DECODED.inc(decoded)

    def _analyse(
        self,
        frame: np.ndarray[Any, Any],
        now: float,
        thumbnail: bool,
        arrivals: list[float],
        colour: np.ndarray[Any, Any] | None = None,
    ) -> None:
        """Health figures of ``frame`` (BGR or grey) and, when asked, a thumbnail of ``colour``
        (default: ``frame``)."""
        if frame.ndim == 3:
            gray_full = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        else:
            gray_full = frame
        gray = cv2.resize(gray_full, (ANALYSIS_W, ANALYSIS_H), interpolation=cv2.INTER_AREA)
        stats = frame_stats(np.asarray(gray, dtype=np.uint8))
        wall = datetime.now(UTC)
        jpeg = None
        if thumbnail:
            picture = frame if colour is None else colour
            small = cv2.resize(picture, (ANALYSIS_W, ANALYSIS_H), interpolation=cv2.INTER_AREA)
            if self.privacy:
                picture = np.asarray(small, dtype=np.uint8)
                small = apply_mask(picture, self._mask(picture.shape))
            ok, buf = cv2.imencode(
                ".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.options.thumbnail_quality]
            )
            if ok:
                jpeg = (buf.tobytes(), wall, ANALYSIS_W, ANALYSIS_H)
        with self._lock:
            self.tracker.on_frames(arrivals)
            self.tracker.on_sample(now, stats)
            self._last_frame_wall = wall
            if jpeg is not None:
                self._thumb = jpeg

    def _mask(self, shape: tuple[int, ...]) -> Mask:
        """The camera's mask for pictures of this shape, rasterised on first use."""
        mask = self._masks.get(shape)
        if mask is None:
            flat = rasterise(self.privacy, shape[1], shape[0])
            mask = self._masks[shape] = image_mask(flat, shape)
        return mask
