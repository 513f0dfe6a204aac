"""The pure parts of `ioc backup`, `ioc restore` and `ioc doctor`: verdicts, archive parsing,
refusals, rendering, the password kept out of command lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ioc.ops.doctor import (
    Check,
    judge_cert,
    judge_disk,
    judge_licence,
    judge_migrations,
    judge_postgres,
    judge_skew,
    judge_timescaledb,
    render_json,
    render_text,
)
from ioc.ops.pgtools import Target, _passfile_line, major_version, unexpected_warnings
from ioc.ops.probes import camera_endpoints
from ioc.ops.restore import (
    name_problem,
    occupancy_problem,
    parse_list_header,
    parse_metadata_copy,
    postgres_problem,
    version_problem,
)

LISTING = """;
; Archive created at 2026-11-25 19:21:55 UTC
;     dbname: ioc
;     TOC Entries: 210
;     Compression: -1
;     Format: CUSTOM
;     Dumped from database version: 15.20 (Debian 15.20-0+deb12u1)
;     Dumped by pg_dump version: 15.20 (Debian 15.20-0+deb12u1)
;
;
; Selected TOC Entries:
;
2; 3079 16386 EXTENSION - timescaledb
"""

METADATA = """SET row_security = off;

COPY _timescaledb_catalog.metadata (key, value, include_in_telemetry) FROM stdin;
install_timestamp\t2026-11-25 19:21:52.627627+00\tt
timescaledb_version\t2.19.3\tf
\\.
"""

PG_DUMP_STDERR = """pg_dump: warning: there are circular foreign-key constraints on this table:
pg_dump: detail: hypertable
pg_dump: hint: You might not be able to restore the dump without using --disable-triggers or temporarily dropping the constraints.
pg_dump: hint: Consider using a full dump instead of a --data-only dump to avoid this problem.
pg_dump: warning: there are circular foreign-key constraints on this table:
pg_dump: detail: chunk
pg_dump: hint: You might not be able to restore the dump without using --disable-triggers or temporarily dropping the constraints.
pg_dump: hint: Consider using a full dump instead of a --data-only dump to avoid this problem.
pg_dump: warning: could not open postgresql://ioc:s3cret@db/ioc for something
"""


# --------------------------------------------------------------------------- backups ---


def test_archive_header_and_extension_version_are_read_from_the_dump() -> None:
    header = parse_list_header(LISTING)
    assert header["dbname"] == "ioc"
    assert header["created"] == "2026-11-25 19:21:55 UTC"
    assert header["Dumped from database version"].startswith("15.20")
    assert parse_metadata_copy(METADATA)["timescaledb_version"] == "2.19.3"
    assert parse_metadata_copy("no copy here") == {}


def test_restore_refusals_name_the_fix() -> None:
    path = Path("b.dump")
    assert version_problem("2.19.3", ["2.19.3"], path) is None
    mismatch = version_problem("2.17.0", ["2.19.3"], path)
    assert mismatch and "2.17.0" in mismatch and "2.19.3" in mismatch
    assert "ALTER EXTENSION timescaledb UPDATE" in mismatch
    missing = version_problem(None, ["2.19.3"], path)
    assert missing and "ioc backup" in missing
    assert postgres_problem("15.20 (Debian)", "16.4") is None
    older = postgres_problem("16.4", "15.20 (Debian 15.20-0+deb12u1)")
    assert older and "PostgreSQL 16" in older
    assert occupancy_problem("ioc", None, False) is None
    assert occupancy_problem("ioc", 0, False) is None
    assert occupancy_problem("ioc", 25, True) is None
    busy = occupancy_problem("ioc", 25, False)
    assert busy and "--force" in busy and "--database" in busy
    for bad in ("postgres", "template1", "", "a;drop", "x" * 70):
        assert name_problem(bad), bad
    assert name_problem("ioc_restored") is None


def test_only_unexpected_pg_dump_warnings_are_kept_and_redacted() -> None:
    kept = unexpected_warnings(PG_DUMP_STDERR)
    assert kept == ["pg_dump: warning: could not open postgresql://***@db/ioc for something"]
    assert unexpected_warnings("") == []


def test_the_password_stays_out_of_the_connection_string() -> None:
    target = Target.from_dsn("postgresql://ioc:p%40ss:w\\rd@127.0.0.1:55432/ioc?sslmode=prefer")
    assert target.password == "p@ss:w\\rd"
    assert "p@ss" not in target.conninfo and "password" not in target.conninfo
    assert "sslmode=prefer" in target.conninfo and target.where == "127.0.0.1:55432/ioc"
    assert target.on("other").dbname == "other" and target.dbname == "ioc"
    assert "password=" in target.dsn()
    # A passfile line matches any host/db/user; ':' and '\\' escaped as libpq requires.
    assert _passfile_line("p@ss:w\\rd") == "*:*:*:*:p@ss\\:w\\\\rd\n"


def test_major_version() -> None:
    assert major_version("15.20 (Debian 15.20-0+deb12u1)") == 15
    assert major_version("pg_dump (PostgreSQL) 16.4") == 16
    assert major_version("unknown") is None


# ---------------------------------------------------------------------------- doctor ---


def test_clock_skew_warns_above_two_seconds() -> None:
    assert judge_skew(0.3, 0.01).status == "ok"
    assert judge_skew(-2.5, 0.01).status == "warn"
    assert judge_skew(2.5, 1.0).status == "ok", "within the measurement's uncertainty"
    assert judge_skew(120, 0.01).status == "fail"
    assert "NTP" in judge_skew(3, 0).fix


def test_disk_space_warns_below_ten_percent() -> None:
    gib = 2**30
    assert judge_disk(Path("/s"), 50 * gib, 100 * gib).status == "ok"
    assert judge_disk(Path("/s"), 9 * gib, 100 * gib).status == "warn"
    assert judge_disk(Path("/s"), 1 * gib, 100 * gib).status == "fail"
    assert "9% free" in judge_disk(Path("/s"), 9 * gib, 100 * gib).detail


def test_certificate_expiry() -> None:
    now = datetime(2026, 11, 25, tzinfo=UTC)
    assert judge_cert(Path("c.pem"), now + timedelta(days=200), now).status == "ok"
    assert judge_cert(Path("c.pem"), now + timedelta(days=10), now).status == "warn"
    expired = judge_cert(Path("c.pem"), now - timedelta(days=3), now)
    assert expired.status == "fail" and "expired 3 days ago" in expired.detail


def test_versions_extension_licence_and_migrations() -> None:
    assert judge_postgres("15.20", 150020).status == "ok"
    assert judge_postgres("16.4", 160004).status == "warn"
    assert judge_timescaledb("2.19.3", "2.19.3", True).status == "ok"
    assert judge_timescaledb("2.17.0", "2.19.3", True).status == "warn"
    assert "UPDATE" in judge_timescaledb("2.17.0", "2.19.3", True).fix
    assert judge_timescaledb(None, "2.19.3", True).fix.startswith("run `ioc migrate`")
    assert judge_timescaledb("2.19.3", "2.19.3", False).status == "fail"
    assert judge_timescaledb(None, None, True).status == "fail"
    assert judge_licence("apache").status == "ok"
    assert judge_licence("timescale").status == "ok"
    assert judge_licence("").status == "fail"
    known = {"0001", "0002"}
    assert judge_migrations("0002", "0002", known).status == "ok"
    assert "ioc migrate" in judge_migrations("0001", "0002", known).fix
    assert "ioc migrate" in judge_migrations(None, "0002", known).fix
    assert "newer" in judge_migrations("0009", "0002", known).fix


def test_camera_endpoints_are_distinct_and_default_to_554() -> None:
    urls = ["rtsp://127.0.0.1:58554/cam1", "rtsp://127.0.0.1:58554/cam2", "rtsp://cams.local/x", ""]
    assert camera_endpoints(urls, "rtsp://127.0.0.1:58554") == [
        ("127.0.0.1", 58554),
        ("cams.local", 554),
    ]
    assert camera_endpoints([], None) == []
    assert camera_endpoints(["rtsp://h:notaport/x"], None) == []


def test_report_renders_one_line_per_check_with_the_fix() -> None:
    checks = [
        Check("database", "ok", "127.0.0.1:55432/ioc answers (2 ms)"),
        Check("mqtt", "fail", "cannot reach the broker", "start it with `ioc services up`"),
        Check("rtsp", "skip", "no cameras configured", "never shown"),
    ]
    text = render_text(checks).splitlines()
    assert text[0].startswith("ok    database")
    assert text[1].startswith("fail  mqtt") and text[1].endswith(
        "→ fix: start it with `ioc services up`"
    )
    assert "never shown" not in text[2]
    assert text[-1].startswith("1 check(s) failed")
    report = json.loads(render_json(checks))
    assert report["ok"] is False and report["failed"] == 1
    assert report["checks"][1] == {
        "name": "mqtt",
        "status": "fail",
        "detail": "cannot reach the broker",
        "fix": "start it with `ioc services up`",
    }
    assert render_text(checks[:1]).splitlines()[-1].startswith("all checks passed")


def test_rtsp_servers_are_summed_up_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("IOC_RTSP_BASE_URL", raising=False)

    from ioc.ops.doctor import DoctorOptions, check_rtsp

    with socket.socket() as listening, socket.socket() as closed:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        up, down = listening.getsockname()[1], closed.getsockname()[1]
        opts = DoctorOptions(timeout_s=1)
        ok = check_rtsp([f"rtsp://127.0.0.1:{up}/cam1", f"rtsp://127.0.0.1:{up}/cam2"], opts)
        assert (ok.status, ok.detail) == ("ok", "1 of 1 RTSP servers answer (all probed)")
        warn = check_rtsp([f"rtsp://127.0.0.1:{up}/a", f"rtsp://127.0.0.1:{down}/b"], opts)
        assert warn.status == "warn" and f"not 127.0.0.1:{down}" in warn.detail
        assert "1 of 2" in warn.detail
    assert check_rtsp([], DoctorOptions()).status == "skip"
