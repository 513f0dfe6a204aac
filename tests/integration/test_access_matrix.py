"""Every API route × every role × inside/outside the user's area: allowed or denied as
docs/security.md says. The table below is the specification; a route missing from it fails
the completeness test, so a new route cannot ship unprotected by accident."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ioc.api.app import create_app
from ioc.bench.common import ensure_user
from ioc.config import Settings
from ioc.db import alerts as alerts_db
from ioc.db.connect import connect
from ioc.db.seed import load_geography, seed
from ioc.security.policy import GRANTS, Perm, Role
from tests.conftest import api_client, drop_database, own_database

pytestmark = pytest.mark.integration

INSIDE, OUTSIDE = "dong-xoai", "binh-long"  # a Đồng Xoài user's own district and another
DEVICES = {
    ("s", INSIDE): "mx-s-in",
    ("s", OUTSIDE): "mx-s-out",
    ("c", INSIDE): "mx-c-in",
    ("c", OUTSIDE): "mx-c-out",
}
# Routes anyone may call: signing in, and liveness and readiness for load balancers.
PUBLIC = {
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/ready"),
}
# Routes any signed-in user may call about themselves.
SELF = {("POST", "/api/v1/auth/logout"), ("GET", "/api/v1/auth/me")}


@dataclass
class World:
    settings: Settings
    conn: Any
    today: str


@dataclass(frozen=True)
class Case:
    method: str
    route: str  # the route's path template, as FastAPI has it
    perm: Perm
    # Builds the concrete request for a target area (None: a route without a target, which
    # must then filter: ``leaks`` says whether a response shows something outside the area).
    make: Callable[[World, str], Awaitable[tuple[str, dict[str, Any]]]]
    targeted: bool = True
    ok: int = 200
    leaks: Callable[[Any], bool] | None = None


async def _alert(w: World, area: str) -> int:
    device = DEVICES[("s", area)]
    async with w.conn.transaction():
        await w.conn.execute(
            "UPDATE alerts SET status = 'resolved', resolved_at = now() "
            "WHERE device_id = %s AND status <> 'resolved'",
            (device,),
        )
        row = await alerts_db.open_alert(
            w.conn,
            rule_id="matrix.test",
            device_id=device,
            severity="major",
            title="t",
            title_en="t",
            value=1.0,
            status="firing",
        )
    assert row is not None
    return int(row["id"])


async def _window(w: World, area: str) -> int:
    cur = await w.conn.execute(
        "INSERT INTO maintenance (area_id, starts_at, ends_at, reason, created_by) "
        "VALUES (%s, now(), now() + interval '1 hour', 'matrix', 'test') RETURNING id",
        (area,),
    )
    return int((await cur.fetchone())["id"])


def fixed(path: str, **kw: Any) -> Callable[[World, str], Awaitable[tuple[str, dict[str, Any]]]]:
    async def make(w: World, area: str) -> tuple[str, dict[str, Any]]:
        names = {"area": area, "s": DEVICES[("s", area)], "c": DEVICES[("c", area)]}
        params = {k: v.format(**names) for k, v in kw.get("params", {}).items()}
        return path.format(**names), kw | ({"params": params} if params else {})

    return make


def on_alert(
    verb: str, body: dict[str, Any]
) -> Callable[..., Awaitable[tuple[str, dict[str, Any]]]]:
    async def make(w: World, area: str) -> tuple[str, dict[str, Any]]:
        return f"/api/v1/alerts/{await _alert(w, area)}/{verb}", {"json": body}

    return make


async def _history(w: World, area: str) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/alerts/{await _alert(w, area)}/history", {}


async def _end_window(w: World, area: str) -> tuple[str, dict[str, Any]]:
    return f"/api/v1/maintenance/{await _window(w, area)}", {}


async def _start_window(w: World, area: str) -> tuple[str, dict[str, Any]]:
    ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    return "/api/v1/maintenance", {"json": {"area_id": area, "ends_at": ends, "reason": "m"}}


def _ranged(path: str) -> Callable[[World, str], Awaitable[tuple[str, dict[str, Any]]]]:
    async def make(w: World, area: str) -> tuple[str, dict[str, Any]]:
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        params = {"start": (end - timedelta(hours=3)).isoformat(), "end": end.isoformat()}
        return path.format(area=area, s=DEVICES[("s", area)]), {"params": params}

    return make


def _days(path: str) -> Callable[[World, str], Awaitable[tuple[str, dict[str, Any]]]]:
    async def make(w: World, area: str) -> tuple[str, dict[str, Any]]:
        params = {"first_day": w.today, "last_day": w.today, "area_id": area}
        return path, {"params": params}

    return make


def areas_outside(rows: Any) -> bool:
    return any(OUTSIDE in str(r.get("area_id", r.get("id"))) for r in rows)


def mentions_outside(body: Any) -> bool:
    text = str(body)
    return OUTSIDE in text or "mx-s-out" in text or "mx-c-out" in text


V, A, M, P, AD = Perm.VIEW, Perm.ACT, Perm.MAINTAIN, Perm.PICTURES, Perm.ADMIN
CASES = [
    Case("GET", "/api/v1/geo/province", V, fixed("/api/v1/geo/province"), targeted=False),
    Case("GET", "/api/v1/geo/provinces", V, fixed("/api/v1/geo/provinces"), targeted=False),
    Case("GET", "/api/v1/areas", V, fixed("/api/v1/areas"), False, leaks=areas_outside),
    Case("GET", "/api/v1/devices", V, fixed("/api/v1/devices", params={"area_id": "{area}"})),
    Case("GET", "/api/v1/quality/sequence", V, fixed("/api/v1/quality/sequence"), False,
         leaks=mentions_outside),
    Case("GET", "/api/v1/alerts", V, fixed("/api/v1/alerts"), False, leaks=mentions_outside),
    Case("POST", "/api/v1/alerts/{alert_id}/ack", A, on_alert("ack", {"note": "x"})),
    Case("POST", "/api/v1/alerts/{alert_id}/resolve", A, on_alert("resolve", {"note": "x"})),
    Case("POST", "/api/v1/alerts/{alert_id}/assign", A, on_alert("assign", {"assignee": "an"})),
    Case("POST", "/api/v1/alerts/{alert_id}/notes", A, on_alert("notes", {"note": "x"})),
    Case("GET", "/api/v1/alerts/{alert_id}/history", V, _history),
    Case("GET", "/api/v1/maintenance", V, fixed("/api/v1/maintenance"), False,
         leaks=mentions_outside),
    Case("POST", "/api/v1/maintenance", M, _start_window, ok=201),
    Case("DELETE", "/api/v1/maintenance/{maintenance_id}", M, _end_window),
    Case("GET", "/api/v1/stats/areas/{area_id}/traffic", V, _ranged("/api/v1/stats/areas/{area}/traffic")),
    Case("GET", "/api/v1/stats/areas/{area_id}/traffic.csv", V,
         _ranged("/api/v1/stats/areas/{area}/traffic.csv")),
    Case("GET", "/api/v1/stats/devices/{device_id}/traffic", V, _ranged("/api/v1/stats/devices/{s}/traffic")),
    Case("GET", "/api/v1/stats/availability", V, _days("/api/v1/stats/availability")),
    Case("GET", "/api/v1/stats/availability.csv", V, _days("/api/v1/stats/availability.csv")),
    Case("GET", "/api/v1/summary/leader", V, fixed("/api/v1/summary/leader"), False,
         leaks=lambda b: mentions_outside(b["hotspots"]) or b["scope"]["id"] == OUTSIDE
         or any(a["id"] == OUTSIDE for a in b["areas"])),
    Case("GET", "/api/v1/summary/wall", V, fixed("/api/v1/summary/wall"), False,
         leaks=mentions_outside),
    Case("GET", "/api/v1/cameras/{device_id}/thumbnail.jpg", P,
         fixed("/api/v1/cameras/{c}/thumbnail.jpg")),
    Case("GET", "/api/v1/devices/{device_id}/series", V, fixed("/api/v1/devices/{s}/series")),
    Case("GET", "/api/v1/users", AD, fixed("/api/v1/users"), False,
         leaks=lambda rows: any(r["area_id"] == OUTSIDE for r in rows)),
    Case("GET", "/api/v1/audit", AD, fixed("/api/v1/audit"), False),
    Case("GET", "/api/v1/freshness", V, fixed("/api/v1/freshness"), False),
    Case("GET", "/api/v1/audit/pictures", AD, fixed("/api/v1/audit/pictures"), False,
         leaks=lambda rows: any(r["device_id"] == "mx-c-out" for r in rows)),
]  # fmt: skip


@pytest.fixture(scope="module")
async def world(services: Settings) -> AsyncIterator[World]:
    settings, name = await own_database(services, "ioc_matrix")
    conn = await connect(settings.dsn, autocommit=True)
    try:
        await seed(conn, load_geography(settings.areas_file), sensors=0, seed_value=1)
        for (kind, area), dev in DEVICES.items():
            await conn.execute(
                "INSERT INTO devices (id, kind, name, area_id, lat, lon) "
                "SELECT %s, %s, %s, id, lat, lon FROM areas WHERE id = %s",
                (dev, "traffic_sensor" if kind == "s" else "camera", dev, area),
            )
            if kind == "c":
                await conn.execute(
                    "INSERT INTO camera_thumbnails (device_id, taken_at, width, height, jpeg) "
                    "VALUES (%s, now(), 1, 1, %s)",
                    (dev, b"\xff\xd8\xff\xd9"),
                )
            await conn.execute(
                "INSERT INTO traffic_observations (time, device_id, seq, intensity, occupancy,"
                " average_speed, interval_s) VALUES (now() - interval '10 minutes', %s, 1, 5,"
                " 0.1, 40, 60)"
                if kind == "s"
                else "SELECT %s",
                (dev,),
            )
        for role, area in itertools.product(Role, (INSIDE, "VN-58")):
            await ensure_user(settings.dsn, f"{role.value}-{area.lower()}", role=role, area=area)
        today = (await (await conn.execute("SELECT (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS d")).fetchone())["d"]  # fmt: skip
        yield World(settings, conn, today.isoformat())
    finally:
        await conn.close()
        await drop_database(services, name)


@pytest.fixture(scope="module")
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(world.settings) as c:
        yield c


@pytest.fixture(scope="module")
async def tokens(world: World, http: httpx.AsyncClient) -> dict[str, str]:
    out = {}
    for role, area in itertools.product(Role, (INSIDE, "VN-58")):
        name = f"{role.value}-{area.lower()}"
        r = await http.post(
            "/api/v1/auth/login", json={"username": name, "password": f"{name}-bench-password"}
        )
        assert r.status_code == 200, r.text
        out[name] = r.json()["access_token"]
    http.cookies.clear()  # the matrix uses bearer tokens only (cookies: test_sign_in.py)
    return out


def test_every_route_is_in_the_table() -> None:
    """Every route of the OpenAPI schema (all API routes are in it) has a row."""
    app = create_app(Settings(environment="test"))
    found = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()
        for method in ops
        if path.startswith("/api/")
    }
    listed = {(c.method, c.route) for c in CASES} | PUBLIC | SELF
    assert found - listed == set(), "routes without an access rule in the matrix"
    assert listed - found == set(), "matrix rows for routes that no longer exist"


async def call(
    http: httpx.AsyncClient, case: Case, path: str, kw: dict[str, Any], token: str | None
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.request(case.method, path, headers=headers, **kw)


async def test_matrix(world: World, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    checked, wrong = 0, []
    for case in CASES:
        path, kw = await case.make(world, INSIDE)
        r = await call(http, case, path, kw, None)
        if r.status_code != 401:
            wrong.append(f"{case.method} {path} without sign-in: {r.status_code}")
        for role, home in itertools.product(Role, (INSIDE, "VN-58")):
            user = f"{role.value}-{home.lower()}"
            allowed = case.perm in GRANTS[role]
            for target in (INSIDE, OUTSIDE) if case.targeted else (None,):
                path, kw = await case.make(world, target or INSIDE)
                r = await call(http, case, path, kw, tokens[user])
                checked += 1
                sees = target is None or home == "VN-58" or target == INSIDE
                want = (case.ok if sees else 404) if allowed else 403
                where = f"{case.method} {path} as {user} (target {target})"
                if r.status_code != want:
                    wrong.append(f"{where}: {r.status_code}, want {want}: {r.text[:200]}")
                elif allowed and case.leaks and home == INSIDE and case.leaks(r.json()):
                    wrong.append(f"{where}: shows something outside {INSIDE}")
    assert not wrong, "\n".join(wrong)
    print(f"access matrix: {checked} (route, role, area) cases checked")
    assert checked >= len(CASES) * len(Role) * 2


async def test_out_of_area_lists_are_filtered_and_province_sees_all(
    world: World, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    await _alert(world, INSIDE)
    await _alert(world, OUTSIDE)
    local = (await http.get("/api/v1/alerts", headers=bearer(tokens, "operator-dong-xoai"))).json()
    everyone = (await http.get("/api/v1/alerts", headers=bearer(tokens, "operator-vn-58"))).json()
    assert {a["area_id"] for a in local} == {INSIDE}
    assert {INSIDE, OUTSIDE} <= {a["area_id"] for a in everyone}
    devices = (await http.get("/api/v1/devices", headers=bearer(tokens, "leader-dong-xoai"))).json()
    assert {d["id"] for d in devices} >= {"mx-s-in", "mx-c-in"}
    assert not {"mx-s-out", "mx-c-out"} & {d["id"] for d in devices}


async def test_every_picture_view_is_counted_and_reported(
    world: World, http: httpx.AsyncClient, tokens: dict[str, str]
) -> None:
    for _ in range(3):
        r = await http.get(
            "/api/v1/cameras/mx-c-in/thumbnail.jpg", headers=bearer(tokens, "operator-dong-xoai")
        )
        assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    report = await http.get(
        "/api/v1/audit/pictures",
        params={"username": "operator-dong-xoai"},
        headers=bearer(tokens, "admin-vn-58"),
    )
    (row,) = report.json()
    assert row["device_id"] == "mx-c-in" and row["views"] >= 3 and row["addresses"]


def bearer(tokens: dict[str, str], user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[user]}"}
