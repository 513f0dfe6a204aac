"""Alert engine (``ioc alerts``): measure, evaluate (pure), apply each transition atomically.

Running two engines is safe: opening relies on the database's one-open-alert-per-(rule, device)
index and every later transition is a conditional update, so a race changes nothing twice.
Root-cause rules are evaluated first, so their children see this tick's parent alerts.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import structlog
import yaml

from ioc.alerts import measure
from ioc.alerts import metrics as m
from ioc.db import alerts as alerts_db
from ioc.db import heartbeats, observations
from ioc.db.connect import connect, describe
from ioc.domain import wire
from ioc.domain.lifecycle import Action, Context, OpenAlert, Transition, evaluate
from ioc.domain.rules import AlertStatus, Rule, RuleError, escalated_severity, parse_rules

log = structlog.get_logger("ioc.alerts")
TOPOLOGY_TTL_S = 30.0
REPORT_EVERY_S = 5.0  # open-alert gauge and the heartbeat row (GET /api/v1/freshness)
HEARTBEAT_ROLE = "alerts"
READING_LOOKBACK = timedelta(days=1)  # how far back the reading behind a transition is looked for
OPENING = {
    Action.OPEN_PENDING: "pending",
    Action.OPEN_FIRING: "firing",
    Action.OPEN_FLAPPING: "flapping",
    Action.OPEN_SUPPRESSED: "suppressed",
}
LIVE = ("pending", "firing", "acknowledged", "flapping", "suppressed")


def load_rules(path: Path) -> list[Rule]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleError(f"{path}: no such rules file (set IOC_RULES_FILE)") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML ({exc})") from None
    try:
        return [r for r in parse_rules(doc) if r.enabled]
    except RuleError as exc:
        raise RuleError(f"{path}: {exc}") from None


class AlertEngine:
    def __init__(self, *, dsn: str, rules: list[Rule], interval_s: float = 1.0) -> None:
        self.dsn = dsn
        self.rules = sorted(rules, key=lambda r: not r.root_cause)
        self.interval_s = interval_s
        self.transitions = 0
        self._stopping = asyncio.Event()
        self._topology: measure.Topology | None = None
        self._baselines = measure.Baselines()
        self.last_cycle_at: float | None = None  # monotonic end of the last good cycle
        self._report_at = 0.0

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Evaluate when new observations are committed (NOTIFY from ingest), and at least every
        ``interval_s`` for what time alone changes (durations, silence, escalation)."""
        conn: psycopg.AsyncConnection[Any] | None = None
        listen: psycopg.AsyncConnection[Any] | None = None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if conn is None or conn.closed or listen is None or listen.closed:
                    for c in (conn, listen):
                        if c is not None:
                            await c.close()
                    conn = await connect(self.dsn, autocommit=True)
                    listen = await connect(self.dsn, autocommit=True)
                    await listen.execute(f"LISTEN {observations.OBSERVATIONS_CHANNEL}")
                started = time.monotonic()
                await self.tick(conn)
                await self._cycle_done(conn, time.monotonic() - started)
                backoff = 0.5
                async for _ in listen.notifies(timeout=self.interval_s, stop_after=1):
                    pass
                # Coalesce: every commit that arrived meanwhile is covered by one tick.
                async for _ in listen.notifies(timeout=0):
                    pass
            except (psycopg.OperationalError, OSError, RuntimeError) as exc:
                m.CYCLE_ERRORS.inc()
                log.warning("alert evaluation failed; retrying", error=describe(exc))
                for c in (conn, listen):
                    if c is not None:
                        await c.close()
                conn = listen = None
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
        for c in (conn, listen):
            if c is not None:
                await c.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def _cycle_done(self, conn: psycopg.AsyncConnection[Any], seconds: float) -> None:
        """Metrics of a good cycle; every REPORT_EVERY_S the open-alert counts and the
        heartbeat row other processes read."""
        self.last_cycle_at = time.monotonic()
        m.CYCLE_SECONDS.observe(seconds)
        m.LAST_CYCLE.set_to_current_time()
        if self.last_cycle_at < self._report_at:
            return
        self._report_at = self.last_cycle_at + REPORT_EVERY_S
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT severity, status, count(*) AS n FROM alerts "
                "WHERE status <> 'resolved' GROUP BY severity, status"
            )
            m.set_open({(r["severity"], r["status"]): r["n"] for r in await cur.fetchall()})
        detail = {"cycle_s": round(seconds, 4), "rules": len(self.rules)}
        await heartbeats.beat(conn, HEARTBEAT_ROLE, detail)

    async def _reading(
        self, conn: psycopg.AsyncConnection[Any], device_id: str, now: datetime
    ) -> str | None:
        """The correlation id of the device's latest reading evaluated at ``now`` (sensors only)."""
        topo = self._topology
        if topo is None or topo.device_kind.get(device_id) != "traffic_sensor":
            return None
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT seq FROM traffic_observations WHERE device_id = %s AND time <= %s"
                " AND time > %s ORDER BY time DESC LIMIT 1",
                (device_id, now, now - READING_LOOKBACK),
            )
            row = await cur.fetchone()
        return None if row is None else wire.correlation_id(device_id, int(row["seq"]))

    async def tick(self, conn: psycopg.AsyncConnection[Any], now: datetime | None = None) -> int:
        """One evaluation of every rule; returns the number of transitions applied."""
        now = now or datetime.now(UTC)
        topo = self._topology
        if topo is None or time.monotonic() - topo.loaded_at > TOPOLOGY_TTL_S:
            topo = self._topology = await measure.topology(conn)
        maintenance = await measure.in_maintenance(conn, now)
        root_rules = [r.id for r in self.rules if r.root_cause]

        applied = 0
        for rule in self.rules:
            values = await measure.measure(conn, rule, now, self._baselines)
            rows = await alerts_db.open_for_rule(conn, rule.id)
            open_alerts = {r["device_id"]: _open_alert(r) for r in rows}
            flaps = await measure.recent_opens(conn, rule, now)
            parents = await measure.root_cause_alerts(conn, root_rules)
            ended = (  # parents whose root-cause alert ended lately: their children settle
                await measure.root_cause_resolved(
                    conn, root_rules, now - timedelta(seconds=rule.largest("settle_s"))
                )
                if rule.suppress_under_parent
                else {}
            )
            for device_id in values.keys() | open_alerts.keys():
                area = topo.device_area.get(device_id)
                if area is None:
                    continue  # unknown or disabled since the last topology refresh
                local = rule.for_area(topo.lineage.get(area, [area]))
                parent = topo.device_parent.get(device_id)
                ctx = Context(
                    in_maintenance=device_id in maintenance,
                    parent_alert_id=parents.get(parent) if parent else None,
                    has_parent=parent is not None,
                    parent_resolved_at=ended.get(parent) if parent else None,
                    recent_opens=flaps.get(device_id, 0),
                )
                alert = open_alerts.get(device_id)
                step = evaluate(local, alert, values.get(device_id), now, ctx)
                if step is not None and await self._apply(conn, local, device_id, alert, step, now):
                    applied += 1
        self.transitions += applied
        return applied

    async def _apply(
        self,
        conn: psycopg.AsyncConnection[Any],
        rule: Rule,
        device_id: str,
        alert: OpenAlert | None,
        step: Transition,
        now: datetime,
    ) -> bool:
        quiet = step.action is Action.STILL_FLAPPING
        cid = None if quiet else await self._reading(conn, device_id, now)
        async with conn.transaction():
            row = await self._write(conn, rule, device_id, alert, step, now, cid)
        if row is not None and not quiet:
            m.TRANSITIONS.labels(step.action.value).inc()
            log.info(
                "alert",
                action=step.action.value,
                rule=rule.id,
                device=device_id,
                value=step.value,
                alert_id=row["id"],
                correlation_id=cid,
            )
        return row is not None and not quiet

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any],
        rule: Rule,
        device_id: str,
        alert: OpenAlert | None,
        step: Transition,
        now: datetime,
        correlation_id: str | None = None,
    ) -> dict[str, Any] | None:
        """Apply one transition; its event carries ``correlation_id``: the reading behind it."""
        a = step.action
        fields = {"correlation_id": correlation_id} if correlation_id else None
        if step.value is not None and not math.isfinite(step.value):
            step = replace(step, value=None)  # e.g. silence after a Last Will: JSON has no inf
        if a in OPENING:
            return await alerts_db.open_alert(
                conn,
                rule_id=rule.id,
                device_id=device_id,
                severity=rule.severity,
                title=rule.title,
                title_en=rule.title_en,
                value=step.value,
                status=OPENING[a],
                at=now,
                suppressed_by=step.suppressed_by,
                event_fields=fields,
            )
        assert alert is not None
        t = alerts_db.transition
        if a is Action.FIRE:
            return await t(
                conn,
                alert.id,
                expected=("pending",),
                to="firing",
                value=step.value,
                at=now,
                event_fields=fields,
            )
        if a is Action.RESOLVE:
            return await t(
                conn,
                alert.id,
                expected=LIVE,
                to="resolved",
                value=step.value,
                at=now,
                event_fields=fields,
            )
        if a is Action.ESCALATE:
            return await t(
                conn,
                alert.id,
                expected=("firing",),
                to="firing",
                value=step.value,
                at=now,
                kind="alert.escalated",
                event_fields=fields,
                escalated=True,
                severity=escalated_severity(alert.severity or rule.severity),
            )
        if a is Action.SUPPRESS:
            by = step.suppressed_by
            parent = int(by[6:]) if by and by.startswith("alert:") else None
            return await t(
                conn,
                alert.id,
                expected=("pending", "firing", "acknowledged", "flapping"),
                to="suppressed",
                value=step.value,
                at=now,
                event_fields=fields,
                suppressed_by=by,
                parent_alert_id=parent,
            )
        if a is Action.UNSUPPRESS:
            return await t(
                conn,
                alert.id,
                expected=("suppressed",),
                to="firing",
                value=step.value,
                at=now,
                event_fields=fields,
                suppressed_by=None,
                parent_alert_id=None,
            )
        if a is Action.STILL_FLAPPING:
            return await t(
                conn,
                alert.id,
                expected=("flapping",),
                to="flapping",
                value=step.value,
                at=now,
                emit=False,
                last_breach_at=now,
            )
        raise AssertionError(a)


def _open_alert(r: dict[str, Any]) -> OpenAlert:
    return OpenAlert(
        id=r["id"],
        status=AlertStatus(r["status"]),
        started_at=r["started_at"],
        fired_at=r["fired_at"],
        escalated=r["escalated"],
        suppressed_by=r["suppressed_by"],
        last_breach_at=r["last_breach_at"],
        severity=r["severity"],
    )
