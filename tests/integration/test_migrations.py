"""Migrations, tested forward from an empty database and from each earlier schema with data in it.

Revisions are found by Alembic (ScriptDirectory), so a new migration is covered as soon as it
exists. Data preservation is checked generically: after each upgrade, every table's rows (on
the columns it had before) must have the same count and checksum. When a migration adds a
table, add rows for it to ROWS below (the test ``test_every_table_gets_representative_rows``
says which table lacks them).
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db import events as events_db
from ioc.db import migrate
from ioc.db.connect import connect
from ioc.db.observations import write_batch
from ioc.domain.wire import TrafficObservation

pytestmark = pytest.mark.integration

SCRIPT = ScriptDirectory(str(migrate.MIGRATIONS))
REVISIONS = [s.revision for s in reversed(list(SCRIPT.walk_revisions()))]  # base first

# Downgrades that fail today, for the migrations' owner to fix (the tests are strict xfails:
# they start failing, as a reminder to remove the entry, once the downgrade works).
KNOWN_BROKEN_DOWNGRADES = {
    "0001": "drops the hypertables in one DROP TABLE with other tables, which TimescaleDB "
    "refuses ('cannot drop a hypertable along with other objects'): one per statement, as "
    "0005 does",
    "0004": "deletes the site devices while sensors and cameras still name them in "
    "devices.parent_id (`ioc seed` links them): clear parent_id first",
}

# Migrations allowed to rewrite existing rows of a table (none so far): {revision: {table}}.
EXPECTED_CHANGES: dict[str, set[str]] = {}

# Representative rows. Each entry is written as soon as what it needs exists (tables, or
# "table.column" for a column a later migration added), so it does not depend on revision
# numbers. Column lists are explicit: later migrations that add columns keep them valid.


@dataclass(frozen=True)
class Rows:
    needs: tuple[str, ...]
    statements: tuple[str, ...]


ROWS: list[Rows] = [
    # 0001
    Rows(
        (
            "areas",
            "devices",
            "traffic_observations",
            "camera_health",
            "device_state",
            "alerts",
            "events",
            "dead_letters",
        ),
        (
            """INSERT INTO areas (id, parent_id, name, name_en, level, lat, lon, depth) VALUES
           ('p', NULL, 'Bình Phước', 'Binh Phuoc', 'province', 11.75, 106.72, 0),
           ('dx', 'p', 'Đồng Xoài', 'Dong Xoai', 'district', 11.53, 106.88, 1)""",
            """INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata) VALUES
           ('ts-1', 'traffic_sensor', 'Ngã tư Đồng Xoài', 'dx', 11.53, 106.88,
            '{"free_flow_kmh": 50}'),
           ('cam-1', 'camera', 'Camera chợ', 'dx', 11.54, 106.89,
            '{"rtsp_url": "rtsp://127.0.0.1:1/cam1", "pool": "default"}')""",
            """INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed,
                                             occupancy, interval_s, received_at)
           SELECT timestamptz '2026-11-20 00:00+00' + g * interval '10 minutes', 'ts-1', g,
                  g % 40, 20 + g % 30, (g % 10) / 10.0, 60,
                  timestamptz '2026-11-20 00:00:02+00' + g * interval '10 minutes'
           FROM generate_series(1, 500) g""",
            """INSERT INTO camera_health (time, device_id, connected, fps, frozen, black, blur,
                                      tamper, scene_shift, status, reasons)
           SELECT timestamptz '2026-11-21 00:00+00' + g * interval '1 hour', 'cam-1', true,
                  10, false, false, 120.5, false, false, 'ok', '[]'
           FROM generate_series(1, 48) g""",
            """INSERT INTO device_state (device_id, last_seen, last_seq, last) VALUES
           ('ts-1', '2026-11-23 11:20+00', 500, '{"speed_kmh": 40}')""",
            """INSERT INTO alerts (rule_id, device_id, area_id, severity, status, title, title_en,
                               value, started_at, fired_at, resolved_at, resolved_by) VALUES
           ('congestion', 'ts-1', 'dx', 'major', 'resolved', 'Ùn tắc', 'Congestion', 8,
            '2026-11-20 07:00+00', '2026-11-20 07:02+00', '2026-11-20 08:00+00', 'op1'),
           ('congestion', 'ts-1', 'dx', 'major', 'firing', 'Ùn tắc', 'Congestion', 6,
            '2026-11-21 07:00+00', '2026-11-21 07:02+00', NULL, NULL)""",
            """INSERT INTO events (time, kind, alert_id, device_id, area_id, severity, actor, payload)
           SELECT started_at, 'alert.' || status, id, device_id, area_id, severity, 'system',
                  jsonb_build_object('id', id, 'status', status)
           FROM alerts ORDER BY id""",
            """INSERT INTO dead_letters (received_at, source, topic, reason, detail, payload) VALUES
           ('2026-11-20 09:00+00', 'mqtt', 'ioc/v1/traffic/ts-9/observation', 'bad_json',
            'Expecting value', '\\x7b6e6f'::bytea)""",
        ),
    ),
    # 0002
    Rows(
        ("camera_workers", "camera_leases", "camera_thumbnails", "camera_baselines"),
        (
            """INSERT INTO camera_workers (worker_id, pool, hostname, pid, expires_at) VALUES
           ('host-1', 'default', 'host', 4242, '2026-11-21 00:00+00')""",
            """INSERT INTO camera_leases (device_id, holder, expires_at, acquired_at, generation)
           VALUES ('cam-1', 'host-1', '2026-11-21 00:00+00', '2026-11-20 23:00+00', 3)""",
            """INSERT INTO camera_thumbnails (device_id, taken_at, width, height, jpeg) VALUES
           ('cam-1', '2026-11-21 00:00+00', 160, 90, '\\xffd8ffe0'::bytea)""",
            """INSERT INTO camera_baselines (device_id, meta, reference) VALUES
           ('cam-1', '{"sharpness": 120.5}', '\\x00000000'::bytea)""",
        ),
    ),
    # 0003
    Rows(
        ("device_state.online", "device_state.availability_at", "device_state.stuck_count"),
        (
            """INSERT INTO device_state (device_id, last_seen, online, availability_at, stuck_count)
           VALUES ('cam-1', NULL, false, '2026-11-21 00:00+00', 0)""",
        ),
    ),
    # 0004
    Rows(
        ("maintenance", "alerts.base_severity", "alerts.assignee"),
        (
            """INSERT INTO devices (id, kind, name, area_id, lat, lon) VALUES
           ('site-dx', 'site', 'Trạm Đồng Xoài', 'dx', 11.53, 106.88)""",
            # As `ioc seed` links them (ioc.db.seed.link_sites): devices depend on their site.
            """UPDATE devices SET parent_id = 'site-dx' WHERE id IN ('ts-1', 'cam-1')""",
            """INSERT INTO maintenance (device_id, area_id, starts_at, ends_at, reason, created_by)
           VALUES ('cam-1', NULL, '2026-11-22 00:00+00', '2026-11-22 04:00+00', 'lau ống kính',
                   'op1')""",
            """INSERT INTO alerts (rule_id, device_id, area_id, severity, base_severity, status,
                               title, title_en, started_at, escalated, suppressed_by, assignee)
           VALUES ('camera_frozen', 'cam-1', 'dx', 'critical', 'major', 'suppressed',
                   'Hình đứng', 'Frozen picture', '2026-11-22 01:00+00', true, 'maintenance',
                   'op2')""",
        ),
    ),
    # 0005
    Rows(
        (
            "traffic_sensor_1m",
            "traffic_sensor_15m",
            "traffic_sensor_1h",
            "traffic_area_1m",
            "traffic_area_15m",
            "traffic_area_1h",
            "availability_area_5m",
            "availability_area_1h",
            "rollup_state",
            "rollup_dirty",
        ),
        (
            """INSERT INTO traffic_sensor_1m (bucket, device_id, readings, volume, speed_sum,
                                          speed_min, speed_max, occupancy_sum)
           VALUES ('2026-11-20 00:10+00', 'ts-1', 1, 1, 21, 21, 21, 0.1)""",
            """INSERT INTO traffic_sensor_15m (bucket, device_id, readings, volume, speed_sum,
                                           speed_min, speed_max, occupancy_sum, speed_p50,
                                           speed_p85)
           VALUES ('2026-11-20 00:00+00', 'ts-1', 1, 1, 21, 21, 21, 0.1, 21, 21)""",
            """INSERT INTO traffic_sensor_1h SELECT * FROM traffic_sensor_15m""",
            """INSERT INTO traffic_area_1m (bucket, area_id, sensors, congested, readings, volume,
                                        speed_sum, speed_min, speed_max, occupancy_sum)
           VALUES ('2026-11-20 00:10+00', 'dx', 1, 0, 1, 1, 21, 21, 21, 0.1)""",
            """INSERT INTO traffic_area_15m (bucket, area_id, sensors, congested, readings, volume,
                                         speed_sum, speed_min, speed_max, occupancy_sum)
           VALUES ('2026-11-20 00:00+00', 'dx', 1, 0, 1, 1, 21, 21, 21, 0.1)""",
            """INSERT INTO traffic_area_1h SELECT * FROM traffic_area_15m""",
            """INSERT INTO availability_area_5m (bucket, area_id, kind, devices, slots_expected,
                                             slots_up, slots_maintenance)
           VALUES ('2026-11-20 00:00+00', 'dx', 'traffic_sensor', 1, 1, 1, 0)""",
            """INSERT INTO availability_area_1h SELECT * FROM availability_area_5m""",
            """UPDATE rollup_state SET watermark = '2026-11-20 01:00+00' WHERE name = 'traffic'""",
            """INSERT INTO rollup_dirty (reason, starts_at, ends_at) VALUES
           ('late', '2026-11-20 00:00+00', '2026-11-20 01:00+00')""",
        ),
    ),
    # 0006
    Rows(
        ("users", "auth_sessions", "audit_log", "picture_views"),
        (
            """INSERT INTO users (username, display_name, role, area_id, password_hash) VALUES
           ('op1', 'Nguyễn Văn A', 'operator', 'dx', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA')""",
            """INSERT INTO auth_sessions (id, user_id, refresh_hash, idle_until, expires_at, ip)
           SELECT '00000000-0000-4000-8000-000000000001', id, 'ab12', '2026-11-21 00:00+00',
                  '2026-11-27 00:00+00', '127.0.0.1' FROM users WHERE username = 'op1'""",
            """INSERT INTO audit_log (at, actor, action, target, ip, detail) VALUES
           ('2026-11-20 09:00+00', 'op1', 'auth.sign_in', 'op1', '127.0.0.1', '{}')""",
            """INSERT INTO picture_views (bucket, username, device_id, ip) VALUES
           ('2026-11-20 09:00+00', 'op1', 'cam-1', '127.0.0.1')""",
        ),
    ),
    # 0007: past thumbnails (history enabled)
    Rows(
        ("camera_thumbnail_history",),
        (
            """INSERT INTO camera_thumbnail_history (device_id, taken_at, width, height, jpeg)
           VALUES ('cam-1', '2026-11-21 00:00+00', 320, 180, '\\xffd8ffe0'::bytea)""",
        ),
    ),
    # role heartbeats (ioc.db.heartbeats)
    Rows(
        ("role_heartbeats",),
        (
            """INSERT INTO role_heartbeats (role, at, instance, detail) VALUES
           ('alerts', '2026-11-20 09:00+00', 'host:1', '{"cycle_s": 0.01}')""",
        ),
    ),
]


# ------------------------------------------------------------------------------- helpers ---


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrate.MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextlib.contextmanager
def empty_database(services: Settings, prefix: str) -> Iterator[tuple[str, str]]:
    """(dsn, sqlalchemy url) of a new, empty database; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(services.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = services.dsn.rsplit("/", 1)[0] + "/" + name
    try:
        yield dsn, dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    finally:
        with psycopg.connect(services.dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def current_revision(dsn: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.errors.UndefinedTable:
            return None
    return None if row is None else str(row[0])


def tables(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Every table of the public schema with its columns, in order (alembic_version aside)."""
    rows = conn.execute(
        """SELECT c.table_name, c.column_name FROM information_schema.columns c
           JOIN information_schema.tables t
             ON t.table_schema = c.table_schema AND t.table_name = c.table_name
           WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
             AND c.table_name <> 'alembic_version'
           ORDER BY c.table_name, c.ordinal_position"""
    ).fetchall()
    found: dict[str, list[str]] = {}
    for table, column in rows:
        found.setdefault(table, []).append(column)
    return found


def fingerprint(
    conn: psycopg.Connection[Any], columns: dict[str, list[str]]
) -> dict[str, tuple[int, str]]:
    """(rows, md5 of the sorted rows) per table, over the given columns only."""
    result = {}
    for table, cols in columns.items():
        row_expr = "ROW(" + ", ".join(f'"{c}"' for c in cols) + ")::text"
        row = conn.execute(
            f"SELECT count(*), md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) "
            f'FROM (SELECT {row_expr} AS r FROM "{table}") s'
        ).fetchone()
        assert row is not None
        result[table] = (int(row[0]), str(row[1]))
    return result


def insert_due(dsn: str, done: frozenset[int] = frozenset()) -> frozenset[int]:
    """Write every ROWS entry not written yet whose needs exist now; returns those written."""
    with psycopg.connect(dsn) as conn:
        have = set()
        for table, columns in tables(conn).items():
            have.add(table)
            have.update(f"{table}.{c}" for c in columns)
        written = set(done)
        for index, entry in enumerate(ROWS):
            if index not in written and set(entry.needs) <= have:
                for statement in entry.statements:
                    conn.execute(statement)  # type: ignore[arg-type]
                written.add(index)
    return frozenset(written)


def snapshot(dsn: str) -> tuple[dict[str, list[str]], dict[str, tuple[int, str]]]:
    with psycopg.connect(dsn) as conn:
        cols = tables(conn)
        return cols, fingerprint(conn, cols)


def assert_kept(
    dsn: str, before: tuple[dict[str, list[str]], dict[str, tuple[int, str]]], revision: str
) -> None:
    cols, prints = before
    with psycopg.connect(dsn) as conn:
        now_tables = tables(conn)
        gone = set(cols) - set(now_tables)
        assert not gone, f"{revision} dropped tables {gone}"
        after = fingerprint(conn, cols)
    allowed = EXPECTED_CHANGES.get(revision, set())
    changed = {t for t in cols if t not in allowed and after[t] != prints[t]}
    assert not changed, f"upgrading to {revision} changed the rows of {sorted(changed)}"


def has_downgrade(revision: str) -> bool:
    module = SCRIPT.get_revision(revision).module  # type: ignore[union-attr]
    fn = getattr(module, "downgrade", None)
    if fn is None:
        return False
    code = fn.__code__
    # `def downgrade(): pass` or `raise NotImplementedError`: no real downgrade.
    return not (len(code.co_code) <= 4 or "NotImplementedError" in code.co_names)


# --------------------------------------------------------------------------------- tests ---


def test_revisions_form_one_line() -> None:
    # Alembic keeps only one of two files with the same revision id: look at the files.
    ids: dict[str, list[str]] = {}
    for path in sorted((migrate.MIGRATIONS / "versions").glob("*.py")):
        found = re.search(r'^revision = ["\']([^"\']+)["\']', path.read_text(), re.M)
        if found:
            ids.setdefault(found.group(1), []).append(path.name)
    twice = {rev: names for rev, names in ids.items() if len(names) > 1}
    assert not twice, f"revision ids used twice: {twice} (renumber one, chain it after the other)"
    assert len(SCRIPT.get_heads()) == 1, f"several heads: {SCRIPT.get_heads()} (merge them)"
    assert len(SCRIPT.get_bases()) == 1
    assert len(set(REVISIONS)) == len(REVISIONS)
    previous = None
    for revision in REVISIONS:
        script = SCRIPT.get_revision(revision)
        assert script is not None and script.down_revision == previous, revision
        assert callable(getattr(script.module, "upgrade", None)), revision
        previous = revision


@pytest.mark.parametrize("revision", REVISIONS)
def test_each_revision_applies_to_an_empty_database(services: Settings, revision: str) -> None:
    with empty_database(services, "ioc_mig_empty") as (dsn, url):
        command.upgrade(alembic_config(url), revision)
        assert current_revision(dsn) == revision
        if revision == REVISIONS[-1]:
            assert migrate.pending(url) == (revision, revision)
            with psycopg.connect(dsn) as conn:
                hypertables = {
                    str(r[0])
                    for r in conn.execute(
                        "SELECT hypertable_name FROM timescaledb_information.hypertables"
                    ).fetchall()
                }
            assert {"traffic_observations", "camera_health"} <= hypertables


def test_every_upgrade_keeps_the_data_of_the_schema_before(services: Settings) -> None:
    """Empty → each revision in turn; rows written at every step survive every later step."""
    with empty_database(services, "ioc_mig_steps") as (dsn, url):
        before, written = None, frozenset[int]()
        for revision in REVISIONS:
            command.upgrade(alembic_config(url), revision)
            assert current_revision(dsn) == revision
            if before is not None:
                assert_kept(dsn, before, revision)
            written = insert_due(dsn, written)
            before = snapshot(dsn)


def test_every_table_gets_representative_rows(services: Settings) -> None:
    with empty_database(services, "ioc_mig_rows") as (dsn, url):
        written = frozenset[int]()
        for revision in REVISIONS:
            command.upgrade(alembic_config(url), revision)
            written = insert_due(dsn, written)
        _, prints = snapshot(dsn)
    empty = sorted(t for t, (count, _) in prints.items() if count == 0)
    assert not empty, f"add rows for {empty} to ROWS in {__file__}"
    stale = [ROWS[i].needs for i in range(len(ROWS)) if i not in written]
    assert not stale, f"ROWS entries whose tables or columns no longer exist: {stale}"


@pytest.mark.skipif(len(REVISIONS) < 2, reason="one revision only")
async def test_previous_schema_with_data_upgrades_to_head(services: Settings) -> None:
    """The upgrade a running centre does next: head-1 with data in it → head, then the code
    of head reads the old rows and writes new ones."""
    import asyncio

    previous, head = REVISIONS[-2], REVISIONS[-1]
    with empty_database(services, "ioc_mig_prev") as (dsn, url):
        await asyncio.to_thread(command.upgrade, alembic_config(url), previous)
        await asyncio.to_thread(insert_due, dsn)
        before = await asyncio.to_thread(snapshot, dsn)
        await asyncio.to_thread(command.upgrade, alembic_config(url), head)
        assert current_revision(dsn) == head
        await asyncio.to_thread(assert_kept, dsn, before, head)

        conn = await connect(dsn)
        try:
            old_alerts = await alerts_db.list_alerts(conn, open_only=False)
            assert {a["rule_id"] for a in old_alerts} >= {"congestion"}
            assert all(a["device_name"] for a in old_alerts)
            old_events = await events_db.after(conn, 0)
            assert [e["id"] for e in old_events] == sorted(e["id"] for e in old_events)
            assert len(old_events) >= 2
            async with conn.transaction():
                opened = await alerts_db.open_alert(
                    conn, rule_id="sensor_silent", device_id="ts-1", severity="minor",
                    title="Mất tín hiệu", title_en="Silent", value=None, status="firing",
                )  # fmt: skip
            assert opened is not None
            assert (await events_db.after(conn, old_events[-1]["id"]))[0]["kind"] == "alert.firing"
            old = TrafficObservation.model_validate(
                {"v": 1, "device_id": "ts-1", "seq": 1, "observed_at": "2026-11-20T00:10:00Z",
                 "intensity": 1, "average_speed": 21, "occupancy": 0.1, "interval_s": 60}
            )  # fmt: skip
            new = old.model_copy(update={"seq": 501})
            async with conn.transaction():
                result = await write_batch(conn, [old, new], [])
            assert (result.inserted, result.duplicates) == (1, 1)  # the old row is still the key
        finally:
            await conn.close()


def _downgrade_cases() -> Iterator[Any]:
    for revision in REVISIONS:
        marks: list[Any] = []
        if not has_downgrade(revision):
            marks.append(pytest.mark.skip(reason=f"{revision} defines no downgrade"))
        elif revision in KNOWN_BROKEN_DOWNGRADES:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BROKEN_DOWNGRADES[revision]))
        yield pytest.param(revision, marks=marks)


@pytest.mark.parametrize("revision", list(_downgrade_cases()))
def test_downgrade_one_step_with_data_and_back(services: Settings, revision: str) -> None:
    """Where a migration defines a downgrade: at that revision with data in every table, one
    step down works, and the upgrade after it too."""
    index = REVISIONS.index(revision)
    with empty_database(services, "ioc_mig_down") as (dsn, url):
        cfg = alembic_config(url)
        command.upgrade(cfg, revision)
        insert_due(dsn)
        command.downgrade(cfg, "-1")
        assert current_revision(dsn) == SCRIPT.get_revision(revision).down_revision  # type: ignore[union-attr]
        if index == 0:
            with psycopg.connect(dsn) as conn:
                assert tables(conn) == {}, "the first migration's downgrade leaves no table"
        command.upgrade(cfg, revision)
        assert current_revision(dsn) == revision
