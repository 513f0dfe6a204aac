"""The dashboard read models against hand-computed values: a database of its own with four
sensors and three cameras in two areas, readings placed in known 5-minute buckets today and a
week ago, a maintenance window, alerts in every status. The leaders' summary is read from the
rollups (built by the maintainer, as ``ioc rollups`` does) and must also equal the same figures
computed from raw rows. Numbers are worked out by hand in the comments."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from psycopg.types.json import Jsonb

from ioc.bench.queries import agree
from ioc.config import Settings
from ioc.db.cameras import upsert_thumbnail
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.rollups import leader
from ioc.rollups.config import RollupSettings
from ioc.rollups.maintain import Maintainer
from ioc.rollups.raw import RawSource
from tests.conftest import api_client, drop_database, own_database, sign_in

pytestmark = pytest.mark.integration
VN = ZoneInfo("Asia/Ho_Chi_Minh")
B = timedelta(minutes=5)
WEEK = timedelta(days=7)
SENSORS = ("s1", "s2", "s3", "s4")


def floor(t: datetime, step: timedelta) -> datetime:
    s = int(step.total_seconds())
    return datetime.fromtimestamp(int(t.timestamp()) // s * s, UTC)


class World:
    """What was inserted, relative to ``cur``: the start of the current 5-minute bucket."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.cur = floor(now, B)
        self.b = {k: self.cur - k * B for k in (1, 2, 3, 4)}  # b[1] = the last complete bucket
        local = now.astimezone(VN)
        self.day_start = local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(UTC)
        self.readings: list[tuple[datetime, str, int, float]] = []  # time, device, vehicles, speed
        self.maintenance = ("s4", self.b[2] + timedelta(seconds=60), now + timedelta(hours=1))


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[tuple[Settings, World]]:
    # Stay clear of a bucket boundary, so the rollups end where this test expects them to.
    while not 20 <= datetime.now(UTC).timestamp() % 300 <= 250:
        await asyncio.sleep(1)
    now = datetime.now(UTC)
    local = now.astimezone(VN)
    if local.hour == 0 and local.minute < 25:
        pytest.skip("the first 25 minutes of the local day hold too few buckets for this data")
    settings, name = await own_database(services, "ioc_summary")
    w = World(now)
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)  # areas
        devices = [
            ("s1", "traffic_sensor", "dong-xoai"),
            ("s2", "traffic_sensor", "dong-xoai"),
            ("s3", "traffic_sensor", "dong-xoai"),
            ("s4", "traffic_sensor", "binh-long"),
            ("c1", "camera", "dong-xoai"),
            ("c2", "camera", "dong-xoai"),
            ("c3", "camera", "binh-long"),
        ]
        for dev, kind, area in devices:  # registered at local midnight a week ago
            await conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon, metadata, created_at) "
                "VALUES (%s, %s, %s, %s, 11.5, 106.9, %s, %s)",
                (dev, kind, f"name {dev}", area, Jsonb({"free_flow_kmh": 50}), w.day_start - WEEK),
            )
        b = w.b
        w.readings = [
            (b[1] + timedelta(seconds=30), "s1", 5, 10.0),
            (b[1] + timedelta(seconds=90), "s1", 7, 12.0),
            (b[2] + timedelta(seconds=30), "s1", 6, 11.0),
            (b[4] + timedelta(seconds=30), "s1", 4, 9.0),  # before the last 15 minutes
            (b[2] + timedelta(seconds=60), "s2", 20, 46.0),
            (b[1] + timedelta(seconds=30), "s4", 8, 40.0),
            (b[2] + timedelta(seconds=30), "s4", 8, 40.0),
            (b[4] + timedelta(seconds=30), "s4", 8, 40.0),
            (w.day_start - timedelta(minutes=4), "s1", 3, 30.0),  # yesterday
            # A week ago, in the same minutes: both sensors slow.
            (b[1] + timedelta(seconds=30) - WEEK, "s1", 10, 12.0),
            (b[2] + timedelta(seconds=60) - WEEK, "s2", 20, 20.0),
        ]
        for i, (t, dev, n, v) in enumerate(w.readings):
            await conn.execute(
                "INSERT INTO traffic_observations (time, device_id, seq, intensity, average_speed,"
                " occupancy, interval_s) VALUES (%s, %s, %s, %s, %s, 0.25, 60)",
                (t, dev, i, n, v),
            )
        state = [  # device, last_seen, online, last, updated_at
            ("s1", now - timedelta(seconds=10), None, {"interval_s": 60}, now),  # ok
            ("s2", now - timedelta(minutes=10), None, {"interval_s": 60}, now),  # silent
            ("s3", now - timedelta(seconds=5), False, {"interval_s": 60}, now),  # offline (LWT)
            ("s4", now - timedelta(seconds=5), None, {"interval_s": 60}, now),  # maintenance
            ("c1", now, None, {"status": "ok"}, now),  # good picture
            ("c2", now, None, {"status": "black"}, now),  # black
            ("c3", now, None, {"status": "ok"}, now - timedelta(minutes=10)),  # stale verdict
        ]
        for dev, seen, online, last, updated in state:
            await conn.execute(
                "INSERT INTO device_state (device_id, last_seen, online, last, updated_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                (dev, seen, online, Jsonb(last), updated),
            )
        health = [
            ("c1", b[1] + timedelta(seconds=10), "ok"),
            ("c1", b[1] + timedelta(seconds=70), "ok"),
            ("c1", b[2] + timedelta(seconds=10), "ok"),
            ("c1", b[3] + timedelta(seconds=10), "black"),
            ("c2", b[1] + timedelta(seconds=10), "black"),
            ("c2", b[2] + timedelta(seconds=10), "black"),
            ("c2", b[3] + timedelta(seconds=10), "black"),
            ("c3", b[3] + timedelta(seconds=10), "ok"),
            ("c2", w.day_start - WEEK + timedelta(seconds=10), "black"),  # availability starts
        ]
        for dev, t, status in health:
            await conn.execute(
                "INSERT INTO camera_health (time, device_id, connected, fps, status) "
                "VALUES (%s, %s, true, 20, %s)",
                (t, dev, status),
            )
        # s4 goes into maintenance one minute into b[2]: b[2] and b[1] no longer count for it.
        await conn.execute(
            "INSERT INTO maintenance (device_id, starts_at, ends_at, reason, created_by) "
            "VALUES (%s, %s, %s, 'test', 'test')",
            w.maintenance,
        )
        alerts = [
            ("s1", "dong-xoai", "critical", "firing"),
            ("s2", "dong-xoai", "major", "acknowledged"),
            ("s3", "dong-xoai", "minor", "pending"),  # not confirmed: not counted
            ("c2", "dong-xoai", "major", "resolved"),  # over: not counted
            ("c1", "dong-xoai", "major", "suppressed"),  # held back: not counted
            ("c3", "binh-long", "minor", "flapping"),
        ]
        for dev, area, sev, status in alerts:
            await conn.execute(
                "INSERT INTO alerts (rule_id, device_id, area_id, severity, status, title, title_en)"
                " VALUES ('r', %s, %s, %s, %s, 't', 't')",
                (dev, area, sev, status),
            )
        past = [  # started = fired, resolved: one open at this instant last week, one not
            ("s3", now - timedelta(days=8), now - timedelta(days=6)),
            ("s3", now - WEEK - timedelta(seconds=60), now - WEEK - timedelta(seconds=30)),
        ]
        for dev, start, end in past:
            await conn.execute(
                "INSERT INTO alerts (rule_id, device_id, area_id, severity, status, title,"
                " title_en, started_at, fired_at, resolved_at)"
                " VALUES ('old', %s, 'dong-xoai', 'major', 'resolved', 't', 't', %s, %s, %s)",
                (dev, start, start, end),
            )
        await upsert_thumbnail(conn, "c1", b"\xff\xd8 a jpeg", now, 320, 180)
        done = await Maintainer(RollupSettings(lag_seconds=0)).catch_up(conn)
        assert done.caught_up
        yield settings, w
    finally:
        await conn.close()
        await drop_database(services, name)


@pytest.fixture(scope="module")
async def client(world: tuple[Settings, World]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(world[0]) as c:
        await sign_in(c, world[0].dsn)
        yield c


def pct(num: float, den: float) -> float | None:
    return round(100 * num / den, 1) if den else None


def xp(num: float, den: float) -> float | None:
    """A share in %, unrounded."""
    return 100 * num / den if den else None


def kpi(value: float | None, last_week: float | None, digits: int = 1) -> dict[str, Any]:
    """A KPI as the API sends it, from unrounded figures."""

    def r(v: float | None, d: int = digits) -> float | None:
        return None if v is None else round(v, d)

    change = None if value is None or last_week is None else value - last_week
    rel = None if value is None or not last_week else 100 * (value - last_week) / last_week
    return {
        "value": r(value),
        "last_week": r(last_week),
        "change": r(change),
        "change_pct": r(rel, 1),
    }


async def test_leader_summary_matches_hand_computed_numbers(
    world: tuple[Settings, World], client: httpx.AsyncClient
) -> None:
    _, w = world
    r = await client.get("/api/v1/summary/leader")
    assert r.status_code == 200, r.text
    s = r.json()
    gen = datetime.fromisoformat(s["generated_at"])
    day_start = datetime.fromisoformat(s["day_start"])
    assert day_start == w.day_start and day_start <= gen < day_start + timedelta(days=1)
    # The rollups were caught up inside the test's bucket: today's slots end at cur, traffic at
    # the minute of the catch-up.
    assert datetime.fromisoformat(s["availability_through"]) == w.cur
    through = datetime.fromisoformat(s["traffic_through"])
    assert w.cur <= through < w.cur + B and through.second == 0
    assert datetime.fromisoformat(s["as_of"]) == w.cur and s["rollups_stale"] is False
    e = int((w.cur - day_start) / B)  # complete buckets today
    assert e >= 5
    assert s["scope"] == s["province"] and s["province"]["id"] == "VN-58"

    # Sensors now: s1 reports; s2 silent, s3 offline; s4 in maintenance (not counted): 1 / 3.
    # Today: s1 has data in b1, b2, b4 (3), s2 in b2 (1), s3 none, s4 in b4 only once b2 and b1
    # are taken out for maintenance (1 of E - 2): 5 / (3E + E - 2).
    assert s["sensors"] == {
        "devices": 4, "in_maintenance": 1, "counted": 3, "available_now": 1, "now_pct": 33.3,
        "buckets_expected": 4 * e - 2, "buckets_with_data": 5, "today_pct": pct(5, 4 * e - 2),
    }  # fmt: skip
    # Cameras now: c1 good; c2 black; c3's verdict is 10 min old: 1 / 3. Today: buckets with a
    # good picture: c1 b1, b2 (b3 was black), c3 b3: 3 / 3E.
    assert s["cameras"] == {
        "devices": 3, "in_maintenance": 0, "counted": 3, "available_now": 1, "now_pct": 33.3,
        "buckets_expected": 3 * e, "buckets_with_data": 3, "today_pct": pct(3, 3 * e),
    }  # fmt: skip
    # Congestion over the last 15 rolled-up minutes (b2 and b1 inside, b4 outside): s1 mean
    # (10 + 12 + 11) / 3 = 11 km/h of 50 (congested), s2 46 of 50; s4 in maintenance is left
    # out: 1 / 2. A week ago: s1 12, s2 20 km/h, both congested: 2 / 2.
    c = s["congestion"]
    assert (c["index_pct"], c["congested"], c["reporting"]) == (50.0, 1, 2)
    assert datetime.fromisoformat(c["window_end"]) == through
    assert datetime.fromisoformat(c["window_start"]) == through - timedelta(minutes=15)
    # Alerts: firing, acknowledged, flapping count; pending, suppressed, resolved do not.
    assert s["alerts"] == {"critical": 1, "major": 1, "minor": 1, "info": 0, "total": 3}

    # Every figure against last week. Now: the slot b1 a week ago (s1 read: 1 of 4 sensors; no
    # camera picture: 0 of 3). Today: up to cur a week ago, s1 in b1 and s2 in b2: 2 / 4E;
    # cameras 0 / 3E. Traffic today: 22 + 20 + 24 = 66 vehicles at (10 + 12 + 11 + 9 + 46 +
    # 3 × 40) / 8 = 26 km/h; a week ago 30 at 16. Alerts: the one of 8 days ago was still
    # open a week ago; 6 were opened today, 1 in the same hours a week ago.
    k = s["kpis"]
    assert k["sensors_now_pct"] == kpi(xp(1, 3), 25.0)
    assert k["cameras_now_pct"] == kpi(xp(1, 3), 0.0)
    assert k["sensors_today_pct"] == kpi(xp(5, 4 * e - 2), xp(2, 4 * e))
    assert k["cameras_today_pct"] == kpi(xp(3, 3 * e), 0.0)
    assert k["congestion_pct"] == kpi(50.0, 100.0)
    assert k["vehicles_today"] == kpi(66, 30, 0)
    assert k["speed_kmh_today"] == kpi(26.0, 16.0)
    assert k["alerts_open"] == kpi(3, 1, 0)
    assert k["alerts_opened_today"] == kpi(6, 1, 0)

    areas = {a["id"]: a for a in s["areas"]}
    dx, bl = areas["dong-xoai"], areas["binh-long"]
    assert (dx["sensors"]["now_pct"], dx["sensors"]["today_pct"]) == (33.3, pct(4, 3 * e))
    assert (dx["cameras"]["now_pct"], dx["cameras"]["today_pct"]) == (50.0, pct(2, 2 * e))
    assert (bl["sensors"]["counted"], bl["sensors"]["now_pct"]) == (0, None)
    assert bl["sensors"]["today_pct"] == pct(1, e - 2)
    assert (bl["cameras"]["now_pct"], bl["cameras"]["today_pct"]) == (0.0, pct(1, e))
    assert dx["congestion"]["index_pct"] == 50.0 and bl["congestion"]["index_pct"] is None
    assert dx["kpis"]["congestion_pct"] == kpi(50.0, 100.0)
    assert bl["kpis"]["sensors_now_pct"] == kpi(None, 0.0)  # s4's slot a week ago: no reading
    assert dx["alerts"]["total"] == 2 and bl["alerts"] == {
        "critical": 0, "major": 0, "minor": 1, "info": 0, "total": 1,
    }  # fmt: skip
    assert dx["kpis"]["alerts_open"] == kpi(2, 1, 0)
    assert bl["kpis"]["alerts_open"] == kpi(1, 0, 0)
    assert areas["loc-ninh"]["sensors"]["devices"] == 0  # every area of the file is listed
    assert [a["name"] for a in s["areas"]] == sorted(a["name"] for a in s["areas"])

    assert [(h["device_id"], h["speed_kmh"], h["speed_ratio_pct"], h["vehicles"], h["congested"],
             h["open_alerts"], h["last_week_speed_kmh"], h["last_week_speed_ratio_pct"])
            for h in s["hotspots"]] == [
        ("s1", 11.0, 22.0, 18, True, 1, 12.0, 24.0),
        ("s2", 46.0, 92.0, 20, False, 1, 20.0, 40.0),
    ]  # fmt: skip


def slots_pct(w: World, t0: datetime, t1: datetime, through: datetime) -> float | None:
    """Sensor slots with a reading / expected, in [t0, t1) up to ``through``: devices count
    from their registration, s4's slots from its maintenance on are not expected."""
    m_dev, m0, m1 = w.maintenance
    expected = up = 0
    t = t0
    while t < min(t1, through):
        for dev in SENSORS:
            if t < w.day_start - WEEK or (dev == m_dev and m0 < t + B and m1 > t):
                continue
            expected += 1
            up += any(d == dev and t <= x < t + B for x, d, _, _ in w.readings)
        t += B
    return pct(up, expected)


async def test_leader_trend_covers_24_hours_in_15_minute_buckets(
    world: tuple[Settings, World], client: httpx.AsyncClient
) -> None:
    _, w = world
    s = (await client.get("/api/v1/summary/leader")).json()
    trend = s["trend"]
    end = floor(datetime.fromisoformat(s["traffic_through"]), timedelta(minutes=15))
    through = datetime.fromisoformat(s["availability_through"])
    times = [datetime.fromisoformat(p["time"]) for p in trend]
    assert len(trend) == 96
    assert times[0] == end - timedelta(hours=24) and times[-1] == end - timedelta(minutes=15)
    for lw, key in ((timedelta(0), "vehicles"), (WEEK, "last_week_vehicles")):
        inside = [r for r in w.readings if end - timedelta(hours=24) - lw <= r[0] < end - lw]
        assert sum(p[key] for p in trend) == sum(r[2] for r in inside)
    for p, t in zip(trend, times, strict=True):
        q = timedelta(minutes=15)
        here = [r for r in w.readings if t <= r[0] < t + q]
        assert p["sensors_reporting"] == len({r[1] for r in here})
        if here:
            assert p["speed_kmh"] == round(sum(r[3] for r in here) / len(here), 1)
        else:
            assert p["speed_kmh"] is None and p["congestion_pct"] is None
        assert p["sensors_pct"] == slots_pct(w, t, t + q, through), t
        assert p["last_week_sensors_pct"] == slots_pct(w, t - WEEK, t + q - WEEK, through - WEEK)


async def test_leader_summary_equals_the_raw_computation(world: tuple[Settings, World]) -> None:
    """The same question asked of the raw tables gives the same answer, figure for figure."""
    settings, _ = world
    conn = await connect(settings.dsn, autocommit=True)
    try:
        fast = await leader.leader_figures(conn, tz="Asia/Ho_Chi_Minh")
        slow = await leader.leader_figures(
            conn,
            tz="Asia/Ho_Chi_Minh",
            now=fast.generated_at,
            source=RawSource(),
            through=(fast.traffic_through, fast.availability_through),
        )
        agree(asdict(fast), asdict(slow))
        assert fast.hotspots and any(p.now.readings for p in fast.trend)
    finally:
        await conn.close()


async def test_a_district_user_gets_their_district_only(world: tuple[Settings, World]) -> None:
    settings, _ = world
    async with api_client(settings) as c:
        await sign_in(c, settings.dsn, "leader-dx", role="leader", area="dong-xoai")
        s: dict[str, Any] = (await c.get("/api/v1/summary/leader")).json()
    assert s["scope"]["id"] == "dong-xoai" and s["province"]["id"] == "VN-58"
    assert [a["id"] for a in s["areas"]] == ["dong-xoai"]  # no sub-areas: the district itself
    assert (s["sensors"]["devices"], s["cameras"]["devices"]) == (3, 2)
    assert s["alerts"]["total"] == 2 and s["kpis"]["alerts_open"]["last_week"] == 1
    assert {h["device_id"] for h in s["hotspots"]} == {"s1", "s2"}
    assert "binh-long" not in str(s)


async def test_device_series_buckets_readings_and_camera_health(
    world: tuple[Settings, World], client: httpx.AsyncClient
) -> None:
    _, w = world
    r = await client.get("/api/v1/devices/s1/series", params={"hours": 6})
    assert r.status_code == 200
    s = r.json()
    assert (s["kind"], s["bucket_minutes"]) == ("traffic_sensor", 5)
    points = {datetime.fromisoformat(p["time"]): p for p in s["points"]}
    b1 = points[w.b[1]]
    assert (b1["speed_kmh"], b1["vehicles"], b1["occupancy_pct"]) == (11.0, 12, 25.0)
    assert (points[w.b[4]]["speed_kmh"], points[w.b[4]]["vehicles"]) == (9.0, 4)
    cam = (await client.get("/api/v1/devices/c1/series")).json()
    cpoints = {datetime.fromisoformat(p["time"]): p for p in cam["points"]}
    assert (cpoints[w.b[1]]["ok_pct"], cpoints[w.b[1]]["fps"]) == (100.0, 20.0)
    assert (cpoints[w.b[3]]["ok_pct"], cpoints[w.b[3]]["status"]) == (0.0, "black")
    assert (await client.get("/api/v1/devices/nope/series")).status_code == 404
    assert (await client.get("/api/v1/devices/s1/series", params={"hours": 0})).status_code == 422


async def test_wall_lists_cameras_with_their_worst_open_alert(
    world: tuple[Settings, World], client: httpx.AsyncClient
) -> None:
    cams = {c["id"]: c for c in (await client.get("/api/v1/summary/wall")).json()}
    assert set(cams) == {"c1", "c2", "c3"}
    assert (cams["c1"]["status"], cams["c1"]["alert"]["status"]) == ("ok", "suppressed")
    assert (cams["c2"]["status"], cams["c2"]["alert"], cams["c2"]["health"]) == (
        "problem",
        None,
        "black",
    )
    assert (cams["c3"]["status"], cams["c3"]["alert"]["severity"]) == ("alert", "minor")
    assert cams["c1"]["thumbnail_at"] is not None and cams["c2"]["thumbnail_at"] is None


async def test_thumbnail_is_served_uncached_and_404_without_one(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/cameras/c1/thumbnail.jpg")
    assert r.status_code == 200
    assert r.content == b"\xff\xd8 a jpeg"
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    assert "x-taken-at" in r.headers
    assert (await client.get("/api/v1/cameras/c2/thumbnail.jpg")).status_code == 404


async def test_pages_and_openapi(client: httpx.AsyncClient) -> None:
    for path, marker in (("/wall", "wall.js"), ("/leader", "leader.js"), ("/", "app.js")):
        r = await client.get(path)
        assert r.status_code == 200 and marker in r.text
    spec = (await client.get("/openapi.json")).json()
    for p in (
        "/api/v1/summary/leader",
        "/api/v1/summary/wall",
        "/api/v1/devices/{device_id}/series",
    ):
        assert p in spec["paths"]
    assert "LeaderSummary" in spec["components"]["schemas"]
