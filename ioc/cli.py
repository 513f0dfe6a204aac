"""The ``ioc`` command: the composition root. Every role of the centre starts here."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.publish as mqtt_publish
from pydantic import ValidationError

from ioc import logs
from ioc.config import Settings, get_settings

ROLES = (
    "api",
    "ingest mqtt",
    "ingest rtsp",
    "alerts",
    "rollups",
    "simulate traffic",
    "simulate cameras",
    "migrate",
    "seed",
    "mqtt sync-logins",
    "dev",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ioc", description="Intelligent Operations Centre backend")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    svc = sub.add_parser("services", help="local PostgreSQL+TimescaleDB and Mosquitto")
    svc.add_argument("action", choices=("up", "down", "status"))

    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("seed", help="load the geography file and the demo devices")
    sub.add_parser("api", help="REST + websocket API and the dashboard")
    from ioc.security import admin_cli

    admin_cli.add_parser(sub)
    ing = sub.add_parser("ingest", help="ingest workers")
    ing.add_argument("source", choices=("mqtt", "rtsp"))
    sub.add_parser("alerts", help="the alert engine")
    rol = sub.add_parser("rollups", help="rollup maintenance and retention (docs/rollups.md)")
    rol.add_argument("--once", action="store_true", help="catch up, apply retention, exit")

    from ioc.domain.wire import SIM_FAULT_KINDS

    sim = sub.add_parser("simulate", help="simulated field devices")
    sim_sub = sim.add_subparsers(dest="what", required=True, metavar="WHAT")
    st = sim_sub.add_parser("traffic", help="traffic sensors publishing over MQTT")
    st.add_argument("--sensors", type=int, default=None, help="default IOC_SIM_SENSORS")
    st.add_argument("--interval", type=float, default=None, help="seconds between readings")
    st.add_argument("--seed", type=int, default=None, help="seeds readings, jams and faults")
    st.add_argument(
        "--fault-rate", type=float, default=0.0, help="chance per reading of a random fault"
    )
    st.add_argument(
        "--fault-kind", action="append", choices=SIM_FAULT_KINDS, help="only these (repeatable)"
    )
    st.add_argument("--congestion-rate", type=float, default=0.0, help="random jams per hour")
    st.add_argument("--processes", type=int, default=1, help="shard the fleet over N processes")
    sc = sim_sub.add_parser("congest", help="tell the running simulator to cause congestion")
    sc.add_argument("--area", help="area id, e.g. dong-xoai")
    sc.add_argument("--device", action="append", help="sensor id (repeatable)")
    sc.add_argument("--speed", type=float, default=8.0, help="km/h during the jam")
    sc.add_argument("--duration", type=float, default=300.0, help="seconds")
    sc.add_argument("--clear", action="store_true", help="end congestion instead")
    sf = sim_sub.add_parser("fault", help="tell the running simulator to make sensors misbehave")
    sf.add_argument("--kind", choices=SIM_FAULT_KINDS)
    sf.add_argument("--area", help="area id, e.g. dong-xoai")
    sf.add_argument("--device", action="append", help="sensor id (repeatable)")
    sf.add_argument("--duration", type=float, default=60.0, help="seconds")
    sf.add_argument("--skew", type=float, default=600.0, help="clock_skew: s ahead (<0: behind)")
    sf.add_argument("--clear", action="store_true", help="end faults instead")
    cams = sim_sub.add_parser("cameras", help="RTSP cameras (GStreamer) with switchable faults")
    cams.add_argument("--cameras", type=int, default=None, help="default IOC_SIM_CAMERAS")
    cams.add_argument("--fps", type=int, default=None, help="default IOC_SIM_CAMERA_FPS")
    cams.add_argument("--size", default=None, help="WxH, default IOC_SIM_CAMERA_SIZE")
    cams.add_argument("--day-seconds", type=float, default=None, help="one day/night cycle")
    from simulators.cameras.gst_server import FAULTS as CAMERA_FAULTS

    cf = sim_sub.add_parser("camera-fault", help="switch a fault of the running camera simulator")
    cf.add_argument("--camera", type=int, help="camera number (path /camN)")
    cf.add_argument("--fault", choices=CAMERA_FAULTS)
    cf.add_argument("--clear", action="store_true", help="clear this camera's (or all) faults")

    from ioc.bench import BENCHES, chaos_options

    bench = sub.add_parser("bench", help="benchmarks; prints one JSON line last")
    benches = bench.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in sorted(BENCHES):  # each takes --quick; chaos has its own options too
        b = benches.add_parser(
            name, help="the centre under faults (docs/reliability.md)" if name == "chaos" else None
        )
        b.add_argument("--quick", action="store_true", help="a smaller, shorter run")
        if name == "chaos":
            chaos_options.add_arguments(b)

    mq = sub.add_parser("mqtt", help="broker logins: one per device, and the ACL (docs/mqtt.md)")
    mq_sub = mq.add_subparsers(dest="what", required=True, metavar="WHAT")
    ms = mq_sub.add_parser("sync-logins", help="give every registered device its broker login")
    ms.add_argument("--out", type=Path, help="write passwd and acl here (a production broker)")
    ms.add_argument("--sim-login", action="store_true", help="also the ioc-sim login (demo)")
    md = mq_sub.add_parser("device-credentials", help="CSV of device logins for installers")
    md.add_argument("--area", help="area id; the devices of it and the areas below it")
    md.add_argument("--out", type=Path, help="CSV file (mode 0600) instead of stdout")

    from ioc.ops import commands as ops_commands

    ops_commands.add_parsers(sub)  # backup, restore, doctor

    from ioc.scenario import commands as scenario_commands

    scenario_commands.add_parsers(sub)  # record, replay, scenario (docs/scenarios.md)

    from ioc.privacy import commands as privacy_commands

    privacy_commands.add_parsers(sub)  # masks, pictures, views, purge (docs/privacy.md)

    dev = sub.add_parser("dev", help="the whole centre on this machine, with simulators")
    dev.add_argument("--no-simulator", action="store_true")
    return p


def _services(settings: Settings, action: str) -> None:
    from ioc.services import LocalServices

    svc = LocalServices(settings)
    if action == "up":
        svc.up()
    elif action == "down":
        svc.down()
    for st in svc.status():
        state = "running" if st.running else "stopped"
        print(f"{st.name:<12} {state:<8} port {st.port:<6} {st.detail}")


def _migrate(settings: Settings) -> None:
    from ioc.db import migrate
    from ioc.db.connect import DatabaseUnavailable, describe

    try:
        migrate.upgrade(settings.sqlalchemy_url)
    except Exception as exc:
        if "connection" in str(exc).lower() or "could not" in str(exc).lower():
            raise DatabaseUnavailable(
                f"cannot reach PostgreSQL ({describe(exc.__cause__ or exc)}); "
                "start it with `ioc services up`"
            ) from None
        raise
    print("database schema is up to date")


def _seed(settings: Settings) -> None:
    from ingest.rtsp.config import camera_settings
    from ioc.db.cameras import seed_cameras
    from ioc.db.connect import connect
    from ioc.db.seed import link_sites, load_geography, seed

    geo = load_geography(settings.areas_file)
    cams = camera_settings(settings)

    async def go() -> tuple[int, int, list[str]]:
        conn = await connect(settings.dsn)
        try:
            async with conn.transaction():
                areas, sensors = await seed(
                    conn, geo, sensors=settings.sim_sensors, seed_value=settings.sim_seed
                )
                cameras = await seed_cameras(
                    conn, geo, cams.sim_cameras, settings.sim_seed, cams.rtsp_base_url
                )
                await link_sites(conn)
                return areas, sensors, cameras
        finally:
            await conn.close()

    areas, sensors, cameras = asyncio.run(go())
    print(
        f"seeded {areas} areas, {sensors} traffic sensors and {len(cameras)} cameras ({geo.name})"
    )
    from ioc.mqtt_logins import sync_after_seed

    if logins := sync_after_seed(settings):
        print(logins)


def _congest(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.domain import wire

    if not args.clear and not (args.area or args.device):
        raise SystemExit("ioc: error: give --area or --device (or --clear)")
    cmd = wire.SimControl(
        action="clear" if args.clear else "congestion",
        area_id=args.area,
        device_ids=args.device,
        speed_kmh=args.speed,
        duration_s=args.duration,
    )
    _send_control(settings, cmd.model_dump_json(), cmd.action)


def _send_control(settings: Settings, payload: str, action: str) -> None:
    """One command on the simulator control topic (QoS 1), as the simulator's own login."""
    from ioc.domain import wire

    mqtt_publish.single(
        wire.SIM_CONTROL,
        payload,
        qos=1,
        hostname=settings.mqtt_host,
        port=settings.mqtt_port,
        auth={"username": settings.mqtt_sim_user, "password": settings.mqtt_sim_password},
    )
    print(f"sent {action} to the traffic simulator")


def _sim_fault(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.domain import wire

    if not args.clear and not (args.kind and (args.area or args.device)):
        raise SystemExit("ioc: error: give --kind and --area or --device (or --clear)")
    cmd = wire.SimFault(
        action="clear_faults" if args.clear else "fault",
        kind=None if args.clear else args.kind,
        area_id=args.area,
        device_ids=args.device,
        duration_s=args.duration,
        skew_s=args.skew,
    )
    _send_control(settings, cmd.model_dump_json(), cmd.action)


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if json.loads(r.read()).get("database"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"the API did not answer at {url} within {timeout:.0f} s")


def _dev(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.services import LocalServices
    from ioc.supervisor import Supervisor

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, and SIGTERM from a process manager, both mean an orderly stop (even when the
    # shell started us with SIGINT ignored, as it does for background jobs).
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    svc = LocalServices(settings)
    already = all(s.running for s in svc.status())
    svc.up()
    sup = Supervisor()
    try:
        _migrate(settings)
        _seed(settings)
        sup.add("ingest-mqtt", "ingest", "mqtt")
        sup.add("ingest-rtsp", "ingest", "rtsp")
        sup.add("alerts", "alerts")
        sup.add("rollups", "rollups")
        sup.add("api", "api")
        if not args.no_simulator:
            sup.add("simulator", "simulate", "traffic")
            sup.add("camera-simulator", "simulate", "cameras")
        url = f"http://{settings.api_host}:{settings.api_port}"
        _wait_http(url + "/api/v1/health", 60)
        from ioc.security.admin_cli import ensure_dev_admin

        user, password = asyncio.run(ensure_dev_admin(settings))
        sign_in = (
            f"sign in as {user} / {password}  (kept in {settings.state_dir / 'admin-password'})"
            if password
            else f"sign in as {user} (its password was changed; `ioc users reset-password {user}`)"
        )
        print(
            f"\n  IOC is running: {url}\n  {sign_in}"
            "\n  cause congestion: ioc simulate congest --area dong-xoai"
            "\n  stop: Ctrl-C\n",
            flush=True,
        )
        while True:
            time.sleep(1)
            sup.check()
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
    finally:
        sup.stop()
        if not already:
            svc.down()


def _run(settings: Settings, args: argparse.Namespace) -> None:
    from ioc import roles

    cmd = args.command
    if cmd == "services":
        _services(settings, args.action)
    elif cmd == "migrate":
        _migrate(settings)
    elif cmd == "seed":
        _seed(settings)
    elif cmd == "api":
        roles.api(settings)
    elif cmd == "users":
        from ioc.security import admin_cli

        admin_cli.run(settings, args)
    elif cmd == "ingest" and args.source == "rtsp":
        asyncio.run(roles.ingest_rtsp(settings))
    elif cmd == "ingest":
        asyncio.run(roles.ingest_mqtt(settings))
    elif cmd == "alerts":
        asyncio.run(roles.alerts(settings))
    elif cmd == "rollups":
        asyncio.run(roles.rollups(settings, once=args.once))
    elif cmd == "simulate" and args.what == "traffic":
        roles.simulate_traffic(
            settings,
            sensors=args.sensors,
            interval_s=args.interval,
            seed=args.seed,
            fault_rate=args.fault_rate,
            fault_kinds=args.fault_kind,
            congestion_per_hour=args.congestion_rate,
            processes=args.processes,
        )
    elif cmd == "simulate" and args.what == "congest":
        _congest(settings, args)
    elif cmd == "simulate" and args.what == "fault":
        _sim_fault(settings, args)
    elif cmd == "simulate" and args.what == "cameras":
        roles.simulate_cameras(
            settings, cameras=args.cameras, fps=args.fps, size=args.size,
            day_seconds=args.day_seconds,
        )  # fmt: skip
    elif cmd == "simulate" and args.what == "camera-fault":
        roles.camera_fault(settings, camera=args.camera, fault=args.fault, clear=args.clear)
    elif cmd == "bench":
        from ioc.bench import chaos_options

        options = chaos_options.given(args) if args.name == "chaos" else {}
        if options:
            try:
                chaos_options.resolve(args.quick, options)
            except ValueError as exc:
                print(f"ioc: error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        roles.bench(settings, args.name, quick=args.quick, options=options)
    elif cmd == "mqtt":
        from ioc import mqtt_logins

        mqtt_logins.command(
            settings, args.what, out=args.out, sim_login=getattr(args, "sim_login", False),
            area=getattr(args, "area", None),
        )  # fmt: skip
    elif cmd in ("backup", "restore", "doctor"):
        from ioc.ops import commands as ops_commands

        ops_commands.run(settings, args)
    elif cmd in ("record", "replay", "scenario"):
        from ioc.scenario import commands as scenario_commands

        scenario_commands.run(settings, args)  # SystemExit(1) when an expectation fails
    elif cmd == "privacy":
        from ioc.privacy import commands as privacy_commands

        privacy_commands.run(settings, args)
    elif cmd == "dev":
        _dev(settings, args)


def _known_errors() -> tuple[type[BaseException], ...]:
    from ingest.mqtt.source import MqttUnavailable
    from ingest.rtsp.config import CameraConfigError
    from ioc.db.connect import DatabaseUnavailable
    from ioc.domain.geo import GeographyError
    from ioc.domain.rules import RuleError
    from ioc.mqtt_logins import LoginError
    from ioc.privacy import PrivacyError
    from ioc.security.users import UserError
    from ioc.services import ServiceError
    from ioc.supervisor import SupervisorError

    return (
        ServiceError,
        DatabaseUnavailable,
        MqttUnavailable,
        CameraConfigError,
        GeographyError,
        RuleError,
        LoginError,
        UserError,
        PrivacyError,
        SupervisorError,
        TimeoutError,
        ConnectionRefusedError,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        err = exc.errors()[0]
        print(
            f"ioc: error: bad setting {'.'.join(map(str, err['loc']))}: {err['msg']}",
            file=sys.stderr,
        )
        return 2
    role = args.command + (f"-{args.source}" if args.command == "ingest" else "")
    logs.configure(
        settings.log_level, settings.log_format, role=role, secrets=logs.secret_values(settings)
    )
    known = _known_errors()
    try:
        _run(settings, args)
    except known as exc:
        print(f"ioc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last line of defence: one line, the traceback only on request
        if settings.log_level.upper() == "DEBUG":
            traceback.print_exc()
        print(
            f"ioc: error: unexpected {type(exc).__name__}: {logs.redact(str(exc))[:300]} "
            "(run with IOC_LOG_LEVEL=DEBUG for the traceback)",
            file=sys.stderr,
        )
        return 1
    return 0


_: Callable[..., Any] = main

if __name__ == "__main__":
    sys.exit(main())
