"""The RTSP camera simulator process: GStreamer's RTSP server serving ``/cam1..N``.

Runs under Debian's ``/usr/bin/python3`` with python3-gi (the venv cannot import ``gi``), so it
imports nothing of ours; ``simulators.cameras.control`` starts it. The password comes from the
environment (``IOC_RTSP_PASSWORD``), never from argv, where ``ps`` would show it.

Each camera is one shared media pipeline:

    imagefreeze(background) ─┬─ compositor ─ videobalance ─ videoscale ─ caps ─ videoscale
    videotestsrc(car) x3 ────┘   (day/night, black,  (blur: the middle caps shrink the picture)
                                  covered)
        ─ x264enc ─ valve ─ rtph264pay

One GLib main loop owns everything: a tick moves the cars and the sun, and the control endpoint
(a small HTTP server in its own thread) hands each command to the main loop with
``GLib.idle_add``. Faults, switchable live per camera:

    frozen   the picture stops changing (frames keep coming)
    black    the picture goes black
    blurred  defocused (downscaled then upscaled)
    covered  the lens is covered (a flat, dim grey picture)
    moved    the camera points elsewhere (the background pans sideways)
    low_fps  only every n-th frame is encoded
    drops    the server closes the camera's connections every few seconds
    hang     the server keeps the connection but sends no video
    auth     the camera refuses our credentials (401)
    path     the camera's path no longer exists (404)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Any

try:  # in the venv, as part of the package
    from simulators.cameras import control_http, pipeline
except ImportError:  # run as a script by /usr/bin/python3: the modules next to this file
    import control_http  # type: ignore[no-redef]
    import pipeline  # type: ignore[no-redef]

FAULTS = pipeline.FAULTS
__all__ = ["FAULTS", "Simulator", "main"]


class Camera:
    """One simulated camera: its fault set, animation clock and (while served) pipeline."""

    def __init__(self, index: int, args: argparse.Namespace) -> None:
        self.index = index
        self.path = f"/cam{index}"
        self.args = args
        self.faults: set[str] = set()
        self.clock = 0.0  # animation time; stands still while frozen
        self.frames = 0  # frames handed to the payloader (what the server really sends)
        self.media: Any = None
        self.factory: Any = None
        self.low_fps_probe: tuple[Any, int] | None = None
        self._low_fps_count = 0

    def element(self, name: str) -> Any:
        return None if self.media is None else self.media.get_element().get_by_name(name)

    def state(self) -> dict[str, Any]:
        return {
            "camera": self.index,
            "path": self.path,
            "faults": sorted(self.faults),
            "frames_sent": self.frames,
            "serving": self.media is not None,
        }


class Simulator:
    def __init__(self, args: argparse.Namespace, password: str) -> None:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

        self.Gst, self.GLib, self.Rtsp, self.GstRtsp = Gst, GLib, GstRtspServer, GstRtsp
        Gst.init(None)
        self.args = args
        self.cameras = {i: Camera(i, args) for i in range(1, args.cameras + 1)}
        self.locked: set[str] = set()  # paths whose camera refuses our credentials
        self.started_cameras = 0
        self.started = time.monotonic()
        self.server = GstRtspServer.RTSPServer()
        self.server.set_address("127.0.0.1")
        self.server.set_service(str(args.port))
        self.server.set_auth(self._make_auth(args.user, password))
        # Clients are served by a thread pool of one by default: each new stream then waits for
        # every other camera's pipeline to start before its own does.
        self.server.get_thread_pool().set_max_threads(32)
        self.mounts = self.server.get_mount_points()
        for cam in self.cameras.values():
            cam.factory = self._make_factory(cam)
            self.mounts.add_factory(cam.path, cam.factory)
        self.loop = GLib.MainLoop()

    # ------------------------------------------------------------------ server set-up ---
    def _make_auth(self, user: str, password: str) -> Any:
        rtsp = self.Rtsp
        locked = self.locked

        class Auth(rtsp.RTSPAuth):  # type: ignore[misc, name-defined]
            def do_authenticate(self, ctx: Any) -> bool:
                path = ctx.uri.abspath if ctx.uri is not None else ""
                if any(path == p or path.startswith(p + "/") for p in locked):
                    return False  # no token: the server answers 401
                return bool(rtsp.RTSPAuth.do_authenticate(self, ctx))

        auth = Auth()
        token = rtsp.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_basic(rtsp.RTSPAuth.make_basic(user, password), token)
        return auth

    def _make_factory(self, cam: Camera) -> Any:
        factory = self.Rtsp.RTSPMediaFactory()
        factory.set_launch(pipeline.launch_string(self.args, cam.index))
        factory.set_shared(True)
        perms = self.Rtsp.RTSPPermissions()
        perms.add_role_from_structure(
            self.Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
        )
        factory.set_permissions(perms)
        factory.connect("media-configure", lambda _f, media: self._configure(cam, media))
        return factory

    def _configure(self, cam: Camera, media: Any) -> None:
        cam.media = media
        cam.low_fps_probe = None
        media.connect("unprepared", lambda m: self._unprepared(cam, m))
        pay = cam.element("pay0")
        pay.get_static_pad("sink").add_probe(self.Gst.PadProbeType.BUFFER, self._count, cam)
        self._apply(cam)
        self._animate(cam)

    def _unprepared(self, cam: Camera, media: Any) -> None:
        if cam.media is media:
            cam.media = None
            cam.low_fps_probe = None

    def _count(self, _pad: Any, _info: Any, cam: Camera) -> Any:
        cam.frames += 1
        return self.Gst.PadProbeReturn.OK

    # --------------------------------------------------------------------- faults ---
    def _apply(self, cam: Camera) -> None:
        """Make the live pipeline (if any) match the camera's fault set."""
        if cam.media is None:
            return
        a, f = self.args, cam.faults
        bg = cam.element("mix").get_static_pad("sink_0")
        bg.set_property("xpos", -int(a.width * pipeline.PAN) if "moved" in f else 0)
        k = a.blur_factor if "blurred" in f else 1
        caps = f"video/x-raw,width={max(2, a.width // k)},height={max(2, a.height // k)}"
        blurcaps = cam.element("blurcaps")
        if blurcaps.get_property("caps").to_string() != caps:
            blurcaps.set_property("caps", self.Gst.Caps.from_string(caps))
        cam.element("valve").set_property("drop", "hang" in f)
        self._animate(cam)
        enc_sink = cam.element("enc").get_static_pad("sink")
        if "low_fps" in f and cam.low_fps_probe is None:
            pid = enc_sink.add_probe(self.Gst.PadProbeType.BUFFER, self._thin, cam)
            cam.low_fps_probe = (enc_sink, pid)
        elif "low_fps" not in f and cam.low_fps_probe is not None:
            pad, pid = cam.low_fps_probe
            pad.remove_probe(pid)
            cam.low_fps_probe = None

    def _thin(self, _pad: Any, _info: Any, cam: Camera) -> Any:
        cam._low_fps_count += 1
        if cam._low_fps_count % max(1, self.args.low_fps_keep):
            return self.Gst.PadProbeReturn.DROP
        return self.Gst.PadProbeReturn.OK

    def set_fault(self, cam: Camera, fault: str, on: bool) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        was = fault in cam.faults
        if on:
            cam.faults.add(fault)
        else:
            cam.faults.discard(fault)
        if fault == "auth":
            (self.locked.add if on else self.locked.discard)(cam.path)
            if on:
                self.kick(cam)
        elif fault == "path" and on != was:
            if on:
                self.mounts.remove_factory(cam.path)
                self.kick(cam)
            else:
                self.mounts.add_factory(cam.path, cam.factory)
        elif fault == "drops" and on and not was:
            self.kick(cam)
            self.GLib.timeout_add(int(self.args.drop_every * 1000), self._drop_again, cam)
        self._apply(cam)

    def _drop_again(self, cam: Camera) -> bool:
        if "drops" not in cam.faults:
            return False
        self.kick(cam)
        return True

    def kick(self, cam: Camera) -> int:
        """Close every client connection that plays this camera."""
        rtsp, kicked = self.Rtsp, [0]

        def by_client(_server: Any, client: Any, *_: Any) -> Any:
            hit = [False]

            def by_session(_c: Any, session: Any, *_: Any) -> Any:
                def by_media(_s: Any, smedia: Any, *_: Any) -> Any:
                    if smedia.matches(cam.path)[0]:
                        hit[0] = True
                    return rtsp.RTSPFilterResult.KEEP

                session.filter(by_media)
                return rtsp.RTSPFilterResult.KEEP

            client.session_filter(by_session)
            if hit[0]:
                kicked[0] += 1
                return rtsp.RTSPFilterResult.REMOVE
            return rtsp.RTSPFilterResult.KEEP

        self.server.client_filter(by_client)
        return kicked[0]

    # ------------------------------------------------------------------ animation ---
    def _tick(self) -> bool:
        dt = pipeline.TICK_MS / 1000
        for cam in self.cameras.values():
            if "frozen" not in cam.faults:
                cam.clock += dt
            self._animate(cam)
        return True

    def _animate(self, cam: Camera) -> None:
        if cam.media is None:
            return
        a = self.args
        mix = cam.element("mix")
        cw = max(16, a.width // 10) // 2 * 2
        span = a.width + cw
        for i, (lane, speed, _) in enumerate(pipeline.CARS, start=1):
            x = (i * span / 3 + speed * a.width * cam.clock) % span - cw
            pad = mix.get_static_pad(f"sink_{i}")
            pad.set_property("xpos", int(x))
            pad.set_property("ypos", int(lane * a.height))
        if "black" in cam.faults:
            brightness, contrast, saturation = pipeline.BLACK
        elif "covered" in cam.faults:
            brightness, contrast, saturation = pipeline.COVERED
        else:
            brightness, contrast = pipeline.balance_for(
                pipeline.daylight(cam.clock, a.day_seconds, a.phase)
            )
            saturation = 1.0
        bal = cam.element("bal")
        bal.set_property("brightness", brightness)
        bal.set_property("contrast", contrast)
        bal.set_property("saturation", saturation)

    # ------------------------------------------------------------------- control ---
    def command(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Runs on the main loop. Returns (HTTP status, JSON body)."""
        parts = [p for p in path.split("?")[0].split("/") if p]
        if method == "GET" and parts in (["health"], []):
            return 200, {
                "ok": True,
                "cameras": len(self.cameras),
                "started": self.started_cameras,
                "port": self.args.port,
            }
        if method == "GET" and parts == ["cameras"]:
            return 200, {"cameras": [c.state() for c in self.cameras.values()]}
        if method == "GET" and parts == ["stats"]:
            return 200, {
                "uptime_s": time.monotonic() - self.started,
                "fps": self.args.fps,
                "frames_sent": {str(c.index): c.frames for c in self.cameras.values()},
            }
        if parts == ["time"]:  # the day/night cycle's time of day (scenarios: "at night")
            clock = max(c.clock for c in self.cameras.values())
            if method == "POST":
                hour = body.get("hour")
                if (
                    isinstance(hour, bool)
                    or not isinstance(hour, int | float)
                    or not 0 <= hour < 24
                ):
                    return 400, {"error": "hour must be a number from 0 to 24"}
                self.args.phase = (hour / 24 - clock / self.args.day_seconds) % 1.0
            now = (self.args.phase + clock / self.args.day_seconds) % 1.0
            return 200, {"hour": round(now * 24, 3), "day_seconds": self.args.day_seconds}
        if method == "POST" and parts == ["clear"]:
            for cam in self.cameras.values():
                for fault in list(cam.faults):
                    self.set_fault(cam, fault, False)
            return 200, {"cameras": [c.state() for c in self.cameras.values()]}
        if method == "POST" and len(parts) == 3 and parts[0] == "cameras":
            try:
                cam = self.cameras[int(parts[1])]
            except (ValueError, KeyError):
                return 404, {"error": f"no camera {parts[1]}"}
            if parts[2] == "clear":
                for fault in list(cam.faults):
                    self.set_fault(cam, fault, False)
                return 200, cam.state()
            if parts[2] == "faults":
                try:
                    self.set_fault(cam, str(body.get("fault")), bool(body.get("on", True)))
                except ValueError as exc:
                    return 400, {"error": str(exc)}
                return 200, cam.state()
        return 404, {"error": f"no such endpoint: {method} {path}"}

    def serve_control(self) -> ThreadingHTTPServer:
        return control_http.serve_json(self.args.control_port, self.on_main_loop)

    def on_main_loop(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        done = threading.Event()
        result: list[tuple[int, Any]] = []

        def run() -> bool:
            try:
                result.append(self.command(method, path, body))
            except Exception as exc:  # report, never kill the main loop
                result.append((500, {"error": f"{type(exc).__name__}: {exc}"}))
            done.set()
            return False

        self.GLib.idle_add(run)
        if not done.wait(10):
            return 503, {"error": "simulator main loop is busy"}
        return result[0]

    def start_cameras(self) -> None:
        """Start every camera's pipeline now and keep it running, as a real camera encodes
        whether anyone watches or not. Holding one prepare of each shared media also keeps the
        server from tearing it down when its last client leaves (a client arriving during
        that teardown would get 503)."""
        for cam in self.cameras.values():
            _, url = self.GstRtsp.RTSPUrl.parse(f"rtsp://127.0.0.1:{self.args.port}{cam.path}")
            media = cam.factory.construct(url)
            if media is None or not media.prepare(None):  # waits for the main loop
                print(f"camera simulator: {cam.path} would not start", file=sys.stderr)
                continue
            self.started_cameras += 1

    def run(self) -> None:
        if self.server.attach(None) == 0:
            raise SystemExit(
                f"camera simulator: cannot listen on 127.0.0.1:{self.args.port} (port in use?); "
                "set IOC_RTSP_PORT to a free port"
            )
        httpd = self.serve_control()
        self.GLib.timeout_add(pipeline.TICK_MS, self._tick)
        threading.Thread(target=self.start_cameras, name="start", daemon=True).start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.GLib.unix_signal_add(self.GLib.PRIORITY_HIGH, sig, self._quit)
        print(
            f"camera simulator: {len(self.cameras)} cameras on rtsp://127.0.0.1:{self.args.port}"
            f"/cam1..{len(self.cameras)}, control http://127.0.0.1:{self.args.control_port}",
            flush=True,
        )
        try:
            self.loop.run()
        finally:
            httpd.shutdown()

    def _quit(self) -> bool:
        self.loop.quit()
        return False


def die_with_parent() -> None:
    """Linux: get SIGTERM when the process that started us dies, even by kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = pipeline.parse_args(sys.argv[1:] if argv is None else argv)
    password = os.environ.get("IOC_RTSP_PASSWORD", "")
    if not password:
        print("camera simulator: IOC_RTSP_PASSWORD is not set", file=sys.stderr)
        return 2
    if os.environ.get("IOC_SIM_DIE_WITH_PARENT") == "1":
        die_with_parent()
    Simulator(args, password).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
