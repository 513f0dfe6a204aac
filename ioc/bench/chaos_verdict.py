"""The verdict of ``ioc bench chaos``: what the database and the clients hold against what was
acknowledged and committed. Pure counting over sets read at the end of the run."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg

if TYPE_CHECKING:
    from ioc.bench.chaos import Chaos
    from ioc.bench.chaos_load import WsClient


def _rows(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        return list(conn.execute(sql, params).fetchall())


def readings(chaos: Chaos) -> dict[str, Any]:
    dsn = chaos.bench.dsn
    rows = _rows(dsn, "SELECT device_id, seq, time FROM traffic_observations")
    stored_keys = [(d, s) for d, s, _ in rows]
    stored = set(stored_keys)
    acked = chaos.publisher.acknowledged()
    attempted = chaos.publisher.attempted()
    missing = acked - stored
    in_window = {k for k in missing if _in_kill_window(chaos, k)}
    gaps: dict[str, int] = defaultdict(int)
    for dev, _seq in attempted - stored:
        gaps[dev] += 1
    worst = sorted(gaps.items(), key=lambda kv: -kv[1])[:5]
    return {
        "published": len(acked),
        "published_unacknowledged": len(attempted - acked),
        "stored": len(stored),
        "stored_rows": len(stored_keys),
        "lost": len(missing - in_window),
        "lost_in_broker_kill_window": len(in_window),
        "broker_kill_window_s": _span(chaos, in_window),
        "lost_per_broker_kill": _per_kill(chaos, in_window),
        "duplicates": len(stored_keys) - len(stored),
        "gaps_per_device": {
            "devices": len({d for d, _ in attempted}),
            "devices_with_gaps": len(gaps),
            "missing_seqs": sum(gaps.values()),
            "worst": worst,
        },
        "ratio": round(len(stored & acked) / len(acked), 6) if acked else None,
    }


def _span(chaos: Chaos, keys: set[tuple[str, int]]) -> float | None:
    """Seconds between the first and the last lost reading's publication (the loss window)."""
    sent = [chaos.publisher.sent_at[k] for k in keys if k in chaos.publisher.sent_at]
    return round(max(sent) - min(sent), 2) if sent else None


def _in_kill_window(chaos: Chaos, key: tuple[str, int]) -> bool:
    sent = chaos.publisher.sent_at.get(key)
    return sent is not None and any(a <= sent <= b for _, a, b in chaos.broker_kills)


def _per_kill(chaos: Chaos, keys: set[tuple[str, int]]) -> dict[str, int]:
    """Lost readings per broker kill. A reading in two windows goes to the earlier kill: it was
    lost at the first kill it did not survive (windows overlap when kills are < 61 s apart)."""
    out = {label: 0 for label, _, _ in chaos.broker_kills}
    for k in keys:
        sent = chaos.publisher.sent_at.get(k)
        hits = [label for label, a, b in chaos.broker_kills if sent is not None and a <= sent <= b]
        if hits:
            out[hits[0]] += 1
    return out


def alerts(chaos: Chaos, until: float) -> dict[str, Any]:
    dsn = chaos.bench.dsn
    expected = chaos.publisher.complete_episodes(until)
    fired = _rows(
        dsn,
        "SELECT device_id, count(*) FROM alerts WHERE rule_id = %s AND fired_at IS NOT NULL "
        "GROUP BY device_id",
        (_rule_id(),),
    )
    per_device = dict(fired)
    raised = sum(1 for d in expected if per_device.get(d, 0) >= 1)
    dup_open = _rows(
        dsn,
        "SELECT count(*) FROM (SELECT rule_id, device_id FROM alerts WHERE status <> 'resolved' "
        "GROUP BY rule_id, device_id HAVING count(*) > 1) x",
    )
    still_open = _rows(
        dsn,
        "SELECT count(*) FROM alerts WHERE rule_id = %s AND status <> 'resolved'",
        (_rule_id(),),
    )
    return {
        "alerts_expected": len(expected),
        "alerts_raised": raised,
        "alerts_missing": sorted(set(expected) - {d for d, n in per_device.items() if n}),
        "alerts_extra": sum(per_device.values()) - raised,
        "alerts_still_open": int(still_open[0][0]),
        "duplicate_open_alerts": int(dup_open[0][0]),
    }


def _rule_id() -> str:
    from ioc.bench.chaos_load import RULE_ID

    return RULE_ID


def stream(chaos: Chaos) -> dict[str, Any]:
    dsn = chaos.bench.dsn
    table = _rows(dsn, "SELECT id, kind FROM events ORDER BY id")
    missed = out_of_order = dups = 0
    per_client: dict[str, dict[str, Any]] = {}
    for c in chaos.screens.clients:
        m, o, d = _client_check(c, table)
        missed, out_of_order, dups = missed + m, out_of_order + o, dups + d
        per_client[c.name] = {
            "received": len(c.received),
            "missed": m,
            "out_of_order": o,
            "duplicates": d,
            "connects": c.connects,
            "snapshots": c.snapshots,
        }
    return {
        "ws_events_missed": missed,
        "ws_events_out_of_order": out_of_order,
        "ws_events_duplicated": dups,
        "ws_clients": per_client,
        "events_in_table": len(table),
    }


def _client_check(c: WsClient, table: list[tuple[int, str]]) -> tuple[int, int, int]:
    """(missed, out of order, duplicated) for one client: every table event after its first
    watermark and up to the last one it could have seen, matching its filter, exactly once and
    in id order. A later snapshot (a resume the server could not serve) counts its skipped
    events as missed, because the events it jumped over never reached the client."""
    if c.first_watermark is None:
        return (len(table), 0, 0)
    expected = [
        i for i, kind in table
        if i > c.first_watermark and (c.kind_prefix is None or kind.startswith(c.kind_prefix))
    ]  # fmt: skip
    got = set(c.received)
    missed = sum(1 for i in expected if i not in got)
    out_of_order = sum(1 for a, b in zip(c.received, c.received[1:], strict=False) if b < a)
    dups = len(c.received) - len(got)
    return missed, out_of_order, dups


def recovery(chaos: Chaos) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, r in enumerate(chaos.recovery):
        out[f"{k + 1}:{r['fault']}"] = r["recovery_s"]
    return out


def cameras(chaos: Chaos) -> dict[str, Any] | None:
    """Leases, health rows, the takeovers and the hung cameras (None: a run without cameras).

    ``not_leased_once``: cameras not held by exactly one live lease of a running worker whose
    heartbeat is live (a lease row has one holder, so "more than one" cannot be stored; what
    can go wrong is none, an expired one, or a dead holder). ``stale``: cameras whose newest
    health row is older than ``FRESH_S`` at the end."""
    from ioc.bench.chaos_cameras import FRESH_S, RULE_ID

    cams = chaos.cameras
    if cams is None:
        return None
    dsn, ids = chaos.bench.dsn, cams.ids
    running = {cams.worker_id(p) for p in cams.workers if p.running}
    leases = _rows(
        dsn,
        """SELECT l.device_id, l.holder FROM camera_leases l
           JOIN camera_workers w ON w.worker_id = l.holder
           WHERE l.device_id = ANY(%s) AND l.expires_at > now() AND w.expires_at > now()""",
        (ids,),
    )
    held = {d: h for d, h in leases if h in running}
    ages = dict(_rows(
        dsn,
        "SELECT device_id, extract(epoch FROM now() - max(time)) FROM camera_health "
        "WHERE device_id = ANY(%s) GROUP BY device_id",
        (ids,),
    ))  # fmt: skip
    gaps = dict(_rows(
        dsn,
        """SELECT device_id, extract(epoch FROM max(gap)) FROM (
               SELECT device_id, time - lag(time) OVER (PARTITION BY device_id ORDER BY time)
                      AS gap FROM camera_health WHERE device_id = ANY(%s)) g
           GROUP BY device_id""",
        (ids,),
    ))  # fmt: skip
    rows = _rows(dsn, "SELECT count(*) FROM camera_health WHERE device_id = ANY(%s)", (ids,))
    hung = {h["camera"] for h in cams.hangs}
    hangs = [_hang(dsn, h, cams.hangs, RULE_ID) for h in cams.hangs]
    steady = cams.steady_at or datetime.now().astimezone()
    fired = _rows(  # before the steady state: cameras coming up (counted apart)
        dsn,
        "SELECT device_id, started_at >= %s, status FROM alerts WHERE rule_id = %s "
        "AND fired_at IS NOT NULL",
        (steady, RULE_ID),
    )
    raised = sum(1 for h in hangs if h["alert_fired_s"] is not None)
    other = _rows(
        dsn,
        "SELECT device_id, kind FROM events WHERE kind LIKE 'camera.%%' AND time >= %s "
        "AND device_id = ANY(%s) AND NOT (device_id = ANY(%s)) ORDER BY id",
        (steady, ids, list(hung)),
    )
    return {
        "count": len(ids),
        "lease_s": cams.lease_s,
        "leases": dict(sorted(Counter(held.values()).items())),
        "not_leased_once": sorted(set(ids) - set(held)),
        "stale": sorted(d for d in ids if ages.get(d) is None or float(ages[d]) > FRESH_S),
        "health_rows": int(rows[0][0]),
        "max_gap_s": {d: round(float(gaps[d]), 1) for d in ids if gaps.get(d) is not None},
        "takeovers": cams.takeovers,
        "hangs": hangs,
        "alerts_expected": len(hangs),
        "alerts_raised": raised,
        "alerts_extra": sum(1 for _, after, _ in fired if after) - raised,
        "alerts_at_start": sum(1 for _, after, _ in fired if not after),
        "alerts_still_open": sum(1 for _, _, status in fired if status != "resolved"),
        "events_other_cameras": [f"{d}:{k}" for d, k in other],
    }


def _hang(
    dsn: str, h: dict[str, Any], all_hangs: list[dict[str, Any]], rule: str
) -> dict[str, Any]:
    """One hang: its camera's events from the fault until the next hang of the same camera (or
    the end), and whether its alert resolved."""
    later = [x["started_at"] for x in all_hangs
             if x["camera"] == h["camera"] and x["started_at"] > h["started_at"]]  # fmt: skip
    until = min(later) if later else datetime.now().astimezone()
    events = _rows(
        dsn,
        "SELECT kind FROM events WHERE device_id = %s AND kind LIKE 'camera.%%' AND time >= %s "
        "AND time < %s ORDER BY id",
        (h["camera"], h["started_at"], until),
    )
    alerts = _rows(
        dsn,
        "SELECT status FROM alerts WHERE rule_id = %s AND device_id = %s AND started_at >= %s "
        "AND started_at < %s",
        (rule, h["camera"], h["started_at"], until),
    )
    return {
        **{k: v for k, v in h.items() if k not in ("started_at", "cleared_at")},
        "events": [k for (k,) in events],
        "alerts": len(alerts),
        "alert_resolved": bool(alerts) and all(s == "resolved" for (s,) in alerts),
    }


def verdict(chaos: Chaos) -> dict[str, Any]:
    import time

    until = time.monotonic()
    dead = _rows(chaos.bench.dsn, "SELECT count(*) FROM dead_letters")
    return {
        **readings(chaos),
        **alerts(chaos, until),
        **stream(chaos),
        "recovery_s": recovery(chaos),
        "cameras": cameras(chaos),
        "dead_letters_expected": chaos.flooded * chaos.copies,
        "dead_letters": int(dead[0][0]),
        "unexpected_exits": {p.name: p.unexpected_exits for p in chaos.procs if p.unexpected_exits},
        "event_producer_failures": chaos.events.failures,
        "ws_errors": len(chaos.screens.errors),
        "finished_at": datetime.now().astimezone().isoformat(timespec="seconds"),
    }
