"""Alert engine (``ioc alerts``): measure, evaluate (pure), apply each transition atomically.

Running two engines is safe: opening relies on the database's one-open-alert-per-(rule, device)
index and every later transition is a conditional update, so a race changes nothing twice.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import structlog
import yaml

from ioc.db import alerts as alerts_db
from ioc.db.connect import connect, describe
from ioc.domain.rules import (
    Action,
    AlertStatus,
    OpenAlert,
    RuleError,
    ThresholdRule,
    Transition,
    evaluate,
    parse_rules,
)

log = structlog.get_logger("ioc.alerts")

_METRIC_SQL = {  # whitelisted column names: the rule file never reaches SQL text
    "average_speed": "average_speed",
    "intensity": "intensity",
    "occupancy": "occupancy",
}


def load_rules(path: Path) -> list[ThresholdRule]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RuleError(f"{path}: no such rules file (set IOC_RULES_FILE)") from None
    except yaml.YAMLError as exc:
        raise RuleError(f"{path}: not valid YAML ({exc})") from None
    try:
        return parse_rules(doc)
    except RuleError as exc:
        raise RuleError(f"{path}: {exc}") from None


class AlertEngine:
    def __init__(self, *, dsn: str, rules: list[ThresholdRule], interval_s: float = 1.0) -> None:
        self.dsn = dsn
        self.rules = rules
        self.interval_s = interval_s
        self.transitions = 0
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        conn: psycopg.AsyncConnection[Any] | None = None
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                if conn is None or conn.closed:
                    conn = await connect(self.dsn, autocommit=True)
                await self.tick(conn)
                backoff = 0.5
            except (psycopg.OperationalError, OSError, RuntimeError) as exc:
                log.warning("alert evaluation failed; retrying", error=describe(exc))
                if conn is not None:
                    await conn.close()
                conn = None
                await self._sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            await self._sleep(self.interval_s)
        if conn is not None:
            await conn.close()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass

    async def tick(self, conn: psycopg.AsyncConnection[Any], now: datetime | None = None) -> int:
        """One evaluation of every rule; returns the number of transitions applied."""
        now = now or datetime.now(UTC)
        applied = 0
        for rule in self.rules:
            values = await self._measure(conn, rule, now)
            open_alerts = {
                r["device_id"]: OpenAlert(r["id"], AlertStatus(r["status"]), r["started_at"])
                for r in await alerts_db.open_for_rule(conn, rule.id)
            }
            for device_id in values.keys() | open_alerts.keys():
                alert = open_alerts.get(device_id)
                step = evaluate(rule, alert, values.get(device_id), now)
                if step is not None and await self._apply(conn, rule, device_id, alert, step, now):
                    applied += 1
        self.transitions += applied
        return applied

    async def _measure(
        self, conn: psycopg.AsyncConnection[Any], rule: ThresholdRule, now: datetime
    ) -> dict[str, float]:
        column = _METRIC_SQL[rule.metric]
        async with conn.cursor() as cur:
            await cur.execute(
                f"""SELECT o.device_id, avg(o.{column})::float8 AS value
                    FROM traffic_observations o JOIN devices d ON d.id = o.device_id
                    WHERE o.time > %s AND o.time <= %s AND d.kind = %s AND d.enabled
                    GROUP BY o.device_id""",
                (now - timedelta(seconds=rule.window_s), now, rule.device_kind),
            )
            return {r["device_id"]: r["value"] for r in await cur.fetchall()}

    async def _apply(
        self,
        conn: psycopg.AsyncConnection[Any],
        rule: ThresholdRule,
        device_id: str,
        alert: OpenAlert | None,
        step: Transition,
        now: datetime,
    ) -> bool:
        async with conn.transaction():
            if step.action in (Action.OPEN_PENDING, Action.OPEN_FIRING):
                row = await alerts_db.open_alert(
                    conn,
                    rule_id=rule.id,
                    device_id=device_id,
                    severity=rule.severity,
                    title=rule.title,
                    title_en=rule.title_en,
                    value=step.value,
                    firing=step.action is Action.OPEN_FIRING,
                    at=now,
                )
            else:
                assert alert is not None
                if step.action is Action.FIRE:
                    row = await alerts_db.transition(
                        conn, alert.id, expected=("pending",), to="firing", value=step.value, at=now
                    )
                else:
                    row = await alerts_db.transition(
                        conn,
                        alert.id,
                        expected=("pending", "firing", "acknowledged"),
                        to="resolved",
                        value=step.value,
                        at=now,
                    )
        if row is not None:
            log.info(
                "alert",
                kind=step.action.value,
                rule=rule.id,
                device=device_id,
                value=step.value,
                alert_id=row["id"],
            )
        return row is not None
