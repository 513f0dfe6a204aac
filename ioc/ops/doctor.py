"""``ioc doctor``: is this deployment healthy, and if not, what to do about it.

Each check gives one :class:`Check` (ok / warn / fail / skip) with a detail and, when it is not
ok, the fix. The judgements are pure functions (``judge_*``) tested without any service; the
probes around them do the I/O, each with a short timeout, and never raise: a probe that cannot
run reports ``fail`` (the thing it needs is broken) or ``skip`` (it depends on a check that
already failed, or there is nothing to check).
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psycopg
from alembic.script import ScriptDirectory

from ioc.config import Settings
from ioc.db import migrate
from ioc.db.connect import describe
from ioc.ops.pgtools import Target
from ioc.ops.probes import camera_endpoints, mqtt_login, port_open

Status = Literal["ok", "warn", "fail", "skip"]
TESTED_PG_MAJOR = 15
SKEW_WARN_S, SKEW_FAIL_S = 2.0, 60.0
DISK_WARN, DISK_FAIL = 0.10, 0.02
CERT_WARN_DAYS = 30
MAX_RTSP_PROBES = 50
START_HINT = "start it with `ioc services up` (or `docker compose up -d`)"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class DoctorOptions:
    certs: list[Path] = field(default_factory=list)
    api_url: str | None = None
    timeout_s: float = 5.0


# ------------------------------------------------------------------------------ verdicts ---


def judge_skew(skew_s: float, uncertainty_s: float) -> Check:
    detail = f"database clock {skew_s:+.3f} s from this host (±{uncertainty_s:.3f} s)"
    fix = "synchronise both clocks with NTP (timedatectl set-ntp true / chrony)"
    if abs(skew_s) - uncertainty_s > SKEW_FAIL_S:
        return Check("clock", "fail", detail, fix)
    if abs(skew_s) - uncertainty_s > SKEW_WARN_S:
        return Check("clock", "warn", detail, fix)
    return Check("clock", "ok", detail)


def judge_disk(path: Path, free: int, total: int) -> Check:
    share = free / total if total else 0.0
    detail = f"{path}: {share:.0%} free ({free / 2**30:.1f} of {total / 2**30:.1f} GiB)"
    fix = "free space there (old backups, logs) or grow the volume; PostgreSQL stops when full"
    if share < DISK_FAIL:
        return Check("disk", "fail", detail, fix)
    if share < DISK_WARN:
        return Check("disk", "warn", detail, fix)
    return Check("disk", "ok", detail)


def judge_cert(path: Path, not_after: datetime, now: datetime) -> Check:
    days = (not_after - now).total_seconds() / 86400
    detail = f"{path}: expires {not_after:%Y-%m-%d %H:%M} UTC"
    fix = "renew the certificate and reload the service that uses it"
    if days <= 0:
        return Check("certificate", "fail", f"{detail} (expired {-days:.0f} days ago)", fix)
    if days < CERT_WARN_DAYS:
        return Check("certificate", "warn", f"{detail} (in {days:.0f} days)", fix)
    return Check("certificate", "ok", f"{detail} (in {days:.0f} days)")


def judge_postgres(version: str, num: int) -> Check:
    major = num // 10000
    if major != TESTED_PG_MAJOR:
        return Check(
            "postgresql",
            "warn",
            f"PostgreSQL {version}",
            f"the centre is built and tested with PostgreSQL {TESTED_PG_MAJOR}",
        )
    return Check("postgresql", "ok", f"PostgreSQL {version}")


def judge_timescaledb(installed: str | None, default: str | None, preloaded: bool) -> Check:
    if not preloaded:
        return Check(
            "timescaledb",
            "fail",
            "timescaledb is not in shared_preload_libraries",
            "add it (shared_preload_libraries = 'timescaledb') and restart PostgreSQL",
        )
    if default is None:
        return Check(
            "timescaledb", "fail", "extension not installed on the server", "run `make setup`"
        )
    if installed is None:
        return Check(
            "timescaledb",
            "fail",
            f"extension not created in this database ({default} available)",
            "run `ioc migrate` (it creates the extension)",
        )
    if installed != default:
        return Check(
            "timescaledb",
            "warn",
            f"TimescaleDB {installed} in the database, {default} installed on the server",
            "take a backup, then `ALTER EXTENSION timescaledb UPDATE` as the first command "
            "of a fresh session (docs/operations.md, Upgrades)",
        )
    return Check("timescaledb", "ok", f"TimescaleDB {installed}")


def judge_licence(licence: str) -> Check:
    if licence == "apache":
        return Check(
            "licence",
            "ok",
            "apache (Apache-2 edition: rollups kept by `ioc rollups`, no compression or "
            "continuous aggregates)",
        )
    if licence == "timescale":
        return Check("licence", "ok", "timescale (community edition: continuous aggregates on)")
    return Check(
        "licence",
        "fail",
        f"unexpected timescaledb.license {licence!r}",
        "set timescaledb.license to 'apache' or 'timescale' in postgresql.conf",
    )


def judge_migrations(current: str | None, head: str | None, known: set[str]) -> Check:
    if current == head:
        return Check("migrations", "ok", f"schema at head ({head})")
    if current is None:
        return Check("migrations", "fail", "no schema in this database", "run `ioc migrate`")
    if current not in known:
        return Check(
            "migrations",
            "fail",
            f"schema at {current}, which this code does not know (code head {head})",
            "a newer version of the centre migrated it: run that version's code",
        )
    return Check(
        "migrations",
        "fail",
        f"schema at {current}, code needs {head}",
        "take a backup (`ioc backup`), then run `ioc migrate`",
    )


def summary(checks: list[Check]) -> tuple[int, int]:
    return sum(c.status == "fail" for c in checks), sum(c.status == "warn" for c in checks)


def render_text(checks: list[Check]) -> str:
    width = max((len(c.name) for c in checks), default=8)
    lines = []
    for c in checks:
        line = f"{c.status:<4}  {c.name:<{width}}  {c.detail}"
        if c.fix and c.status in ("warn", "fail"):
            line += f"  → fix: {c.fix}"
        lines.append(line)
    failed, warned = summary(checks)
    if failed:
        lines.append(f"{failed} check(s) failed, {warned} warning(s): fix the failures above")
    else:
        lines.append(f"all checks passed ({warned} warning(s))")
    return "\n".join(lines)


def render_json(checks: list[Check]) -> str:
    failed, warned = summary(checks)
    return json.dumps(
        {
            "ok": failed == 0,
            "failed": failed,
            "warnings": warned,
            "checks": [asdict(c) for c in checks],
        },
        ensure_ascii=False,
    )


# ------------------------------------------------------------------------------- probes ---


def _pg_fix(settings: Settings) -> str:
    where = "IOC_DATABASE_URL" if settings.database_url else "IOC_PG_HOST / IOC_PG_PORT"
    return f"{START_HINT}, or check {where}"


def check_database(settings: Settings, opts: DoctorOptions) -> tuple[list[Check], dict[str, Any]]:
    """Reachability, versions, extension, licence, migrations and clock: one connection."""
    target = Target.from_dsn(settings.dsn)
    facts: dict[str, Any] = {}
    dependent = ("postgresql", "timescaledb", "licence", "migrations", "clock")
    try:
        conn = psycopg.connect(
            settings.dsn, autocommit=True, connect_timeout=max(1, round(opts.timeout_s))
        )
    except psycopg.Error as exc:
        failed = [
            Check(
                "database",
                "fail",
                f"cannot connect to {target.where} ({describe(exc)})",
                _pg_fix(settings),
            )
        ]
        failed += [Check(name, "skip", "database unreachable") for name in dependent]
        return failed, facts
    checks: list[Check] = []
    try:
        with conn:
            _inspect(conn, target, checks, facts)
    except psycopg.Error as exc:
        checks.append(
            Check("database", "fail", f"a query failed ({describe(exc)})", "see PostgreSQL's log")
        )
    return checks, facts


def _inspect(
    conn: psycopg.Connection[Any], target: Target, checks: list[Check], facts: dict[str, Any]
) -> None:
    started = time.monotonic()
    conn.execute("SELECT 1")
    rtt_ms = (time.monotonic() - started) * 1000
    checks.append(Check("database", "ok", f"{target.where} answers ({rtt_ms:.0f} ms)"))

    def one(query: str) -> Any:
        row = conn.execute(query).fetchone()
        return None if row is None else row[0]

    checks.append(
        judge_postgres(str(one("SHOW server_version")), int(one("SHOW server_version_num")))
    )
    installed = one("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
    default = one("SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'")
    preload = "timescaledb" in str(one("SHOW shared_preload_libraries"))
    checks.append(judge_timescaledb(installed, default, preload))
    licence = one("SELECT current_setting('timescaledb.license', true)")
    checks.append(judge_licence(str(licence or "")))
    try:
        current = one("SELECT version_num FROM alembic_version")
    except psycopg.errors.UndefinedTable:
        current = None
    script = ScriptDirectory(str(migrate.MIGRATIONS))
    known = {s.revision for s in script.walk_revisions()}
    checks.append(judge_migrations(current, script.get_current_head(), known))
    before = time.time()
    db_now = float(one("SELECT extract(epoch FROM clock_timestamp())"))
    after = time.time()
    checks.append(judge_skew(db_now - (before + after) / 2, (after - before) / 2))
    try:
        facts["data_directory"] = str(one("SHOW data_directory"))
    except psycopg.Error:
        pass  # needs superuser or pg_read_all_settings: then the disk check skips it
    try:
        facts["cameras"] = [
            str(r[0])
            for r in conn.execute(
                "SELECT DISTINCT metadata->>'rtsp_url' FROM devices "
                "WHERE kind = 'camera' AND enabled AND metadata ? 'rtsp_url'"
            ).fetchall()
        ]
    except psycopg.Error:
        facts["cameras"] = []


def check_mqtt(settings: Settings, opts: DoctorOptions) -> Check:
    where = f"{settings.mqtt_host}:{settings.mqtt_port}"
    user = settings.mqtt_ingest_user
    outcome = mqtt_login(
        settings.mqtt_host, settings.mqtt_port, user, settings.mqtt_ingest_password, opts.timeout_s
    )
    if outcome == "ok":
        return Check("mqtt", "ok", f"{where} accepts the ingest login ({user})")
    if outcome.startswith("refused:"):
        return Check(
            "mqtt",
            "fail",
            f"{where} refused the ingest login {user} ({outcome.removeprefix('refused:')})",
            "IOC_MQTT_INGEST_PASSWORD must match the broker's password file: `ioc services up` "
            "rewrites it locally; in compose see deploy/mosquitto/mosquitto.conf",
        )
    return Check(
        "mqtt",
        "fail",
        f"cannot reach the broker at {where} ({outcome})",
        f"{START_HINT}, or check IOC_MQTT_HOST / IOC_MQTT_PORT",
    )


def check_rtsp(cameras: list[str], opts: DoctorOptions, base_url: str | None = None) -> Check:
    """One line for all the cameras' RTSP servers (a real site has one per camera) and the
    one IOC_RTSP_BASE_URL names, when set."""
    endpoints = camera_endpoints(cameras, base_url)
    if not endpoints:
        return Check("rtsp", "skip", "no cameras configured")
    sample = endpoints[:MAX_RTSP_PROBES]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda e: port_open(e[0], e[1], opts.timeout_s), sample))
    down = [f"{host}:{port}" for (host, port), ok in zip(sample, answers, strict=True) if not ok]
    probed = f"{len(sample)} of {len(endpoints)}" if len(sample) < len(endpoints) else "all"
    detail = f"{len(sample) - len(down)} of {len(sample)} RTSP servers answer ({probed} probed)"
    if not down:
        return Check("rtsp", "ok", detail)
    more = f" and {len(down) - 3} more" if len(down) > 3 else ""
    return Check(
        "rtsp",
        "warn",
        f"{detail}; not {', '.join(down[:3])}{more} (their cameras show as offline)",
        "start the cameras' server (`ioc simulate cameras` when simulated), or check the "
        "cameras' network and URLs (IOC_RTSP_BASE_URL)",
    )


def check_disks(settings: Settings, facts: dict[str, Any]) -> list[Check]:
    state = settings.state_dir.expanduser().absolute()
    paths = [state]
    marker = state / "RUNTIME_DIR"
    if marker.is_file():
        paths.append(Path(marker.read_text().strip()))
    if facts.get("data_directory"):
        paths.append(Path(facts["data_directory"]))
    seen: set[int] = set()
    checks = []
    for path in paths:
        probe = path
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # the state dir may not exist yet: its filesystem counts
        try:
            device = probe.stat().st_dev
            usage = shutil.disk_usage(probe)
        except OSError:
            continue  # e.g. the database's data directory on another host
        if device in seen:
            continue
        seen.add(device)
        checks.append(judge_disk(path, usage.free, usage.total))
    return checks


def cert_not_after(path: Path) -> datetime:
    """notAfter of the first certificate in a PEM file (stdlib parser, else `openssl x509`)."""
    decode: Callable[[str], dict[str, Any]] | None = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is not None:
        text = decode(str(path))["notAfter"]
    else:
        out = subprocess.run(
            ["openssl", "x509", "-enddate", "-noout", "-in", str(path)],
            capture_output=True, text=True, timeout=10, check=True,
        )  # fmt: skip
        text = out.stdout.strip().removeprefix("notAfter=")
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(text), UTC)


def configured_certs(settings: Settings) -> list[Path]:
    """Certificate files named by settings (any ``*cert_file`` / ``*_cert`` field that is set)."""
    found = []
    for name, value in settings.model_dump().items():
        if value and name.endswith(("cert_file", "_cert", "certfile")):
            found.append(Path(str(value)))
    return found


def check_certs(paths: list[Path], now: datetime | None = None) -> list[Check]:
    now = now or datetime.now(UTC)
    checks = []
    for path in paths:
        try:
            checks.append(judge_cert(path, cert_not_after(path), now))
        except (OSError, ssl.SSLError, subprocess.SubprocessError, KeyError, ValueError) as exc:
            reason = "not found" if not path.exists() else f"not a PEM certificate ({exc})"
            checks.append(Check("certificate", "fail", f"{path}: {reason}", "check the path given"))
    return checks


def api_base(settings: Settings) -> str:
    host = settings.api_host
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(host, host)
    return f"http://{host}:{settings.api_port}"


def check_api(settings: Settings, opts: DoctorOptions) -> Check:
    base = (opts.api_url or api_base(settings)).rstrip("/")
    url = f"{base}/api/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=opts.timeout_s) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return Check("api", "fail", f"{url} answered HTTP {exc.code}", "see the API's log")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            "api",
            "fail",
            f"no answer from {url} ({reason})",
            "start it with `ioc api` (or `ioc dev`), or check IOC_API_HOST / IOC_API_PORT / --api-url",
        )
    if not body.get("database"):
        return Check(
            "api",
            "fail",
            f"{url}: the API cannot reach the database",
            "see the API's log; check IOC_DATABASE_URL there",
        )
    return Check(
        "api",
        "ok",
        f"{url}: {body.get('status', 'ok')}, {body.get('stream_clients', 0)} live clients",
    )


def run_checks(settings: Settings, opts: DoctorOptions) -> list[Check]:
    checks, facts = check_database(settings, opts)
    checks.append(check_mqtt(settings, opts))
    checks.append(check_rtsp(facts.get("cameras", []), opts, settings.rtsp_base_url))
    checks += check_disks(settings, facts)
    checks += check_certs([*configured_certs(settings), *opts.certs])
    checks.append(check_api(settings, opts))
    return checks
