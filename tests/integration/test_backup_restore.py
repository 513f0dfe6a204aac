"""`ioc backup` of a running centre, `ioc restore` into a fresh database: the same alerts,
events and observations, hypertables still hypertables with the same chunks; the clear
mistakes refused with one line; the password never on a command line or in the output."""

from __future__ import annotations

import asyncio
import os
import random
import stat
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from ioc.db.observations import DeadLetter, write_batch
from ioc.db.seed import load_geography, seed
from ioc.domain.wire import Reason, TrafficObservation
from tests.conftest import drop_database, env_for, own_database
from tests.integration.test_migrations import fingerprint, tables

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 20, tzinfo=UTC)


def ioc(settings: Settings, *args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = env_for(settings) | {"IOC_DATABASE_URL": database_url, "IOC_LOG_LEVEL": "DEBUG"}
    proc = subprocess.run(
        [sys.executable, "-m", "ioc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert settings.pg_password not in proc.stdout + proc.stderr, "a password in the output"
    return proc


def url_of(services: Settings, name: str) -> str:
    return services.dsn.rsplit("/", 1)[0] + "/" + name


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ioc: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def observation(device: str, seq: int, when: datetime) -> TrafficObservation:
    return TrafficObservation(
        device_id=device,
        seq=seq,
        observed_at=when,
        intensity=seq % 40,
        average_speed=20 + seq % 50,
        occupancy=(seq % 10) / 10,
        interval_s=60,
    )


async def make_history(dsn: str, sensors: list[str]) -> None:
    """Three days of readings (several chunks), dead letters, alerts through their lifecycle."""
    rng = random.Random(58)
    conn = await connect(dsn)
    try:
        for step in range(0, 72 * 4, 12):  # every 15 min for 3 days, 12 steps per batch
            batch = [
                observation(s, k, T0 + timedelta(minutes=15 * k))
                for k in range(step, step + 12)
                for s in sensors
            ]
            letters = [
                DeadLetter("mqtt", f"ioc/v1/traffic/{sensors[0]}/observation", Reason.BAD_JSON,
                           "Expecting value", b"{no")
            ] if step % 48 == 0 else []  # fmt: skip
            async with conn.transaction():
                await write_batch(conn, batch, letters)
        for i, device in enumerate(sensors[:24]):
            async with conn.transaction():
                opened = await alerts_db.open_alert(
                    conn, rule_id="congestion", device_id=device, severity="major",
                    title="Ùn tắc", title_en="Congestion", value=rng.uniform(3, 9),
                    status="pending", at=T0 + timedelta(hours=i),
                )  # fmt: skip
                assert opened is not None
                alert_id = int(opened["id"])
                await alerts_db.transition(conn, alert_id, expected=("pending",), to="firing")
                if i % 3 >= 1:
                    await alerts_db.transition(
                        conn, alert_id, expected=("firing",), to="acknowledged", actor="op1",
                        note="đã cử người",
                    )  # fmt: skip
                    await alerts_db.add_note(conn, alert_id, actor="op1", note="đang xử lý")
                if i % 3 == 2:
                    await alerts_db.transition(
                        conn, alert_id, expected=("acknowledged",), to="resolved", actor="op1"
                    )
    finally:
        await conn.close()


def hypertable_layout(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        hypertables = conn.execute(
            "SELECT hypertable_name, num_dimensions FROM timescaledb_information.hypertables "
            "ORDER BY 1"
        ).fetchall()
        chunks = conn.execute(
            "SELECT hypertable_name, range_start, range_end FROM timescaledb_information.chunks "
            "ORDER BY 1, 2"
        ).fetchall()
        sequences = conn.execute(
            "SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public' "
            "ORDER BY 1"
        ).fetchall()
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return {"hypertables": hypertables, "chunks": chunks, "sequences": sequences, "rev": revision}


def content(dsn: str) -> dict[str, tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return fingerprint(conn, tables(conn))


async def keep_writing(dsn: str, sensor: str, stop: asyncio.Event) -> int:
    """The centre at work during the backup: one batch after another, each its own commit."""
    conn = await connect(dsn)
    seq = 10_000
    try:
        while not stop.is_set():
            batch = [
                observation(sensor, seq + k, T0 + timedelta(days=4, seconds=seq + k))
                for k in range(20)
            ]
            async with conn.transaction():
                await write_batch(conn, batch, [])
            seq += 20
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return seq


async def test_backup_of_a_running_centre_restores_the_same_data(
    services: Settings, tmp_path: Path
) -> None:
    _, source = await own_database(services, "ioc_bk_src")
    restored = f"ioc_bk_dst_{uuid.uuid4().hex[:6]}"
    source_url, restored_url = url_of(services, source), url_of(services, restored)
    try:
        conn = await connect(source_url)
        async with conn.transaction():
            await seed(conn, load_geography(services.areas_file), sensors=60, seed_value=58)
        rows = await (
            await conn.execute("SELECT id FROM devices WHERE kind = 'traffic_sensor' ORDER BY id")
        ).fetchall()
        await conn.close()
        sensors = [r["id"] for r in rows]
        await make_history(source_url, sensors)

        # 1. A backup while observations keep arriving: a consistent snapshot.
        stop = asyncio.Event()
        writer = asyncio.create_task(keep_writing(source_url, sensors[0], stop))
        await asyncio.sleep(0.3)
        live = tmp_path / "live.dump"
        proc = await asyncio.to_thread(
            ioc, services, "backup", "--out", str(live), database_url=source_url
        )
        stop.set()
        await writer
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(live.stat().st_mode) == 0o600, "a backup holds every row: owner only"
        assert not list(tmp_path.glob("*.partial"))

        proc = await asyncio.to_thread(
            ioc, services, "restore", str(live), "--database", restored, database_url=source_url
        )
        assert proc.returncode == 0, proc.stderr
        assert f"into {restored} (new database)" in proc.stdout
        with psycopg.connect(restored_url) as r, psycopg.connect(source_url) as s:
            query = "SELECT seq FROM traffic_observations WHERE device_id = %s AND seq >= 10000 ORDER BY seq"
            got = [row[0] for row in r.execute(query, (sensors[0],)).fetchall()]
            written = [row[0] for row in s.execute(query, (sensors[0],)).fetchall()]
        assert got == written[: len(got)], "the snapshot holds whole batches, in order: a prefix"
        assert len(got) % 20 == 0

        # 2. At rest: a backup, restored over the first copy (--force), equals the source.
        first_copy = await asyncio.to_thread(content, restored_url)
        assert first_copy["traffic_observations"][0] == 60 * 288 + len(got)
        refused = await asyncio.to_thread(
            ioc, services, "restore", str(live), "--database", restored, database_url=source_url
        )
        one_line_error(refused, f"database {restored} is not empty", "--force", "--database")
        assert await asyncio.to_thread(content, restored_url) == first_copy, "left as it was"

        rest = tmp_path / "rest.dump"
        started = time.monotonic()
        proc = await asyncio.to_thread(
            ioc, services, "backup", "--out", str(rest), database_url=source_url
        )
        backup_s = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert "backup written" in proc.stdout
        backup_said = proc.stdout.splitlines()[0]
        started = time.monotonic()
        proc = await asyncio.to_thread(
            ioc,
            services,
            "restore",
            str(rest),
            "--database",
            restored,
            "--force",
            database_url=source_url,
        )
        restore_s = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        assert "replaced the old content" in proc.stdout
        restore_said = proc.stdout.splitlines()[0]

        want, have = (
            await asyncio.to_thread(content, source_url),
            await asyncio.to_thread(content, restored_url),
        )
        assert have == want, {t: (want[t], have.get(t)) for t in want if have.get(t) != want[t]}
        assert want["alerts"][0] == 24 and want["events"][0] >= 24 * 2
        assert want["traffic_observations"][0] > 60 * 288 and want["dead_letters"][0] == 6
        layout = await asyncio.to_thread(hypertable_layout, source_url)
        assert await asyncio.to_thread(hypertable_layout, restored_url) == layout
        assert len([c for c in layout["chunks"] if c[0] == "traffic_observations"]) >= 4

        # The restored database works: out of restore mode, new rows go to new chunks,
        # event ids continue after the last one (the live stream's cursor).
        with psycopg.connect(restored_url, autocommit=True) as r:
            assert r.execute("SHOW timescaledb.restoring").fetchone() == ("off",)
            r.execute(
                "INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed,"
                " occupancy, interval_s) VALUES ('2027-03-01 00:00+00', %s, 1, 1, 30, 0.1, 60)",
                (sensors[1],),
            )
            chunks = r.execute(
                "SELECT count(*) FROM show_chunks('traffic_observations')"
            ).fetchone()
            assert chunks == (
                len([c for c in layout["chunks"] if c[0] == "traffic_observations"]) + 1,
            )
            max_event = r.execute("SELECT max(id) FROM events").fetchone()
            new_event = r.execute(
                "INSERT INTO events (kind, payload) VALUES ('test.restored', '{}') RETURNING id"
            ).fetchone()
            assert max_event is not None and new_event is not None and new_event[0] > max_event[0]
            # TimescaleDB's job scheduler runs again for the restored database (when the
            # cluster has a worker slot left: each database's scheduler takes one).
            deadline = time.monotonic() + 15
            while not r.execute(
                "SELECT 1 FROM pg_stat_activity WHERE datname = %s AND backend_type = "
                "'TimescaleDB Background Worker Scheduler'",
                (restored,),
            ).fetchone():
                busy = r.execute(
                    "SELECT count(*) >= current_setting('max_worker_processes')::int - 1 "
                    "FROM pg_stat_activity WHERE backend_type LIKE 'TimescaleDB%%'"
                ).fetchone()
                if busy == (True,):
                    break
                assert time.monotonic() < deadline, "no job scheduler after the restore"
                time.sleep(0.2)

        print(
            f"\n{want['traffic_observations'][0]} observations, {want['alerts'][0]} alerts, "
            f"{want['events'][0]} events, {len(layout['chunks'])} chunks; wall time with the "
            f"CLI start: backup {backup_s:.1f} s, restore {restore_s:.1f} s\n  {backup_said}"
            f"\n  {restore_said}"
        )
    finally:
        await drop_database(services, source)
        await drop_database(services, restored)


async def test_restore_refuses_a_backup_of_another_timescaledb_version(
    services: Settings, tmp_path: Path
) -> None:
    _, name = await own_database(services, "ioc_bk_ver")
    target = f"ioc_bk_never_{uuid.uuid4().hex[:6]}"
    try:
        with psycopg.connect(url_of(services, name), autocommit=True) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
            ).fetchone()
            assert row is not None
            ours = str(row[0])
            # What a backup taken on a server with another TimescaleDB records.
            conn.execute(
                "UPDATE _timescaledb_catalog.metadata SET value = '2.99.0' "
                "WHERE key = 'timescaledb_version'"
            )
        dump = tmp_path / "other-version.dump"
        proc = ioc(services, "backup", "--out", str(dump), database_url=url_of(services, name))
        assert proc.returncode == 0, proc.stderr
        proc = ioc(services, "restore", str(dump), "--database", target, database_url=services.dsn)
        one_line_error(proc, "TimescaleDB 2.99.0", ours, "ALTER EXTENSION timescaledb UPDATE")
        with psycopg.connect(services.dsn) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,))
            assert found.fetchone() is None, "nothing was created"
    finally:
        await drop_database(services, name)


def test_restore_refuses_what_is_not_a_backup(services: Settings, tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a dump\n")
    one_line_error(
        ioc(services, "restore", str(junk), "--database", "x", database_url=services.dsn),
        "valid archive",
        "ioc backup",
    )
    one_line_error(
        ioc(services, "restore", str(tmp_path / "missing.dump"), database_url=services.dsn),
        "no such file",
    )
    one_line_error(
        ioc(services, "restore", str(junk), "--database", "postgres", database_url=services.dsn),
        "choose another --database",
    )


def test_the_password_reaches_the_tools_only_through_a_private_passfile(
    services: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ioc.ops import backup, pgtools

    calls: list[dict[str, Any]] = []
    real_run = subprocess.run

    def spy(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        env = kwargs.get("env") or {}
        call: dict[str, Any] = {"argv": " ".join(map(str, argv)), "env": dict(env)}
        if env.get("PGPASSFILE"):
            passfile = Path(env["PGPASSFILE"])
            call["passfile"] = passfile
            call["mode"] = stat.S_IMODE(passfile.stat().st_mode)
            call["holds_password"] = services.pg_password in passfile.read_text()
        calls.append(call)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(pgtools.subprocess, "run", spy)
    monkeypatch.setenv("PGPASSWORD", "an-old-wrong-one")  # must not win over the passfile
    result = backup.backup(services.dsn, tmp_path / "b.dump")
    assert result.size_bytes > 0 and result.warnings == []
    dumps = [c for c in calls if "pg_dump" in c["argv"] and "--version" not in c["argv"]]
    assert dumps, calls
    for call in calls:
        assert services.pg_password not in call["argv"]
        assert services.pg_password not in {v for k, v in call["env"].items() if k != "PGPASSFILE"}
    for call in dumps:
        assert call["mode"] == 0o600 and call["holds_password"]
        assert "PGPASSWORD" not in call["env"]
        assert not call["passfile"].exists(), "the passfile is removed afterwards"
    assert os.environ["PGPASSWORD"] == "an-old-wrong-one"
