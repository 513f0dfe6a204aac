"""``ioc backup``, ``ioc restore`` and ``ioc doctor``: argument parsing and output.

``ioc.cli`` registers these with :func:`add_parsers` and hands them to :func:`run`. A failure
ends with one ``ioc: error: <cause>: <fix>`` line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ioc.config import Settings

COMMANDS = ("backup", "restore", "doctor")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser("backup", help="back up the database (pg_dump -Fc; docs/operations.md)")
    b.add_argument(
        "--out", type=Path, help="file to write (default: <state dir>/backups/ioc-<db>-<time>.dump)"
    )
    r = sub.add_parser("restore", help="restore a backup into a fresh database")
    r.add_argument("file", type=Path, help="a file made by `ioc backup`")
    r.add_argument("--database", help="database to restore into (default: the configured one)")
    r.add_argument(
        "--force", action="store_true", help="replace the database even when it holds tables"
    )
    d = sub.add_parser("doctor", help="check this deployment and say what to fix")
    d.add_argument("--json", action="store_true", help="one JSON document on stdout")
    d.add_argument(
        "--cert",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="a PEM certificate whose expiry to check (repeatable)",
    )
    d.add_argument("--api-url", help="where the API answers (default: from IOC_API_HOST/PORT)")
    d.add_argument("--timeout", type=float, default=5.0, help="seconds per probe")


def run(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.ops.pgtools import OpsError  # imported here: `ioc --help` stays light

    try:
        if args.command == "backup":
            _backup(settings, args)
        elif args.command == "restore":
            _restore(settings, args)
        elif args.command == "doctor":
            _doctor(settings, args)
    except OpsError as exc:
        raise SystemExit(f"ioc: error: {exc}") from None


def _backup(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.ops.backup import backup, default_path
    from ioc.ops.pgtools import Target

    out = args.out or default_path(settings.state_dir, Target.from_dsn(settings.dsn).dbname)
    r = backup(settings.dsn, out.expanduser().absolute())
    print(
        f"backup written: {r.path} ({_size(r.size_bytes)} in {r.seconds:.1f} s; "
        f"PostgreSQL {r.server_version.split()[0]}, TimescaleDB {r.timescaledb_version})"
    )
    for line in r.warnings:
        print(f"  pg_dump said: {line}")
    print(f"restore it with: ioc restore {r.path} --database <new name>   (docs/operations.md)")


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _restore(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.ops.pgtools import Target
    from ioc.ops.restore import restore

    r = restore(settings.dsn, args.file.expanduser(), database=args.database, force=args.force)
    what = "replaced the old content" if r.replaced else "new database"
    print(
        f"restored {args.file} into {r.database} ({what}) in {r.seconds:.1f} s: "
        f"{r.hypertables} hypertables with {r.chunks} chunks, {r.alerts} alerts, "
        f"{r.events} events; TimescaleDB {r.timescaledb_version}"
    )
    if r.revision != r.head:
        print(
            f"the schema is at {r.revision or 'nothing'}, this code needs {r.head}: "
            "run `ioc migrate` before starting the centre on it"
        )
    configured = Target.from_dsn(settings.dsn).dbname
    if r.database != configured:
        print(
            f"the centre still uses {configured}; to switch, set IOC_PG_DATABASE={r.database} "
            "(or the database in IOC_DATABASE_URL) and restart its roles"
        )


def _doctor(settings: Settings, args: argparse.Namespace) -> None:
    from ioc.ops.doctor import DoctorOptions, render_json, render_text, run_checks, summary

    opts = DoctorOptions(certs=list(args.cert), api_url=args.api_url, timeout_s=args.timeout)
    checks = run_checks(settings, opts)
    print(render_json(checks) if args.json else render_text(checks), flush=True)
    failed, _ = summary(checks)
    if failed:
        raise SystemExit(1)
