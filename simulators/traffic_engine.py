"""The traffic fleet as a deterministic state machine: time in, actions out. No I/O.

:class:`TrafficEngine` decides, for every sensor it owns, when it reads (each on its own phase
within the interval), what it reads (:mod:`simulators.traffic_model`), which faults apply
(:mod:`simulators.traffic_faults`) and which bytes go out. The MQTT shell
(:mod:`simulators.traffic`) executes the resulting :data:`Action` list. Given the same fleet,
config, clock values and control commands, the output is the same, byte for byte.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from ioc.domain import wire
from ioc.domain.fleet import SensorSpec
from simulators.traffic_faults import Fault, FaultKind, random_fault, render, variant_of
from simulators.traffic_model import (
    JAM_SLOT_S,
    S_OFFSET,
    Jam,
    Reading,
    draw,
    phase,
    random_jam,
    reading,
    sensor_key,
    spread,
)

MAX_LAG_READINGS = 5  # further behind than this, readings are skipped (the sim was starved)
SPREAD_HOPS = 2  # how far on-demand congestion spreads along the road links
SPREAD_DELAY_S = 90.0


@dataclass(frozen=True, slots=True)
class Publish:
    index: int
    topic: str
    payload: bytes
    observed_at: float


@dataclass(frozen=True, slots=True)
class GoOffline:
    """Drop the sensor's connection without a goodbye and keep what it reads (store-and-forward)."""

    index: int


@dataclass(frozen=True, slots=True)
class GoOnline:
    """Reconnect the sensor: ``online``, then what it kept, in order."""

    index: int


Action = Publish | GoOffline | GoOnline


@dataclass(frozen=True)
class EngineConfig:
    seed: int = 58
    interval_s: float = 2.0
    fault_rate: float = 0.0  # chance per reading that a sensor starts a random fault
    fault_kinds: tuple[FaultKind, ...] = tuple(FaultKind)
    congestion_per_hour: float = 0.0  # random jams per hour, fleet-wide
    timezone: str = "Asia/Ho_Chi_Minh"
    local_time_share: float = 0.3  # share of sensors that stamp +07:00 instead of Z


@dataclass
class SensorState:
    seq: int = 0
    faults: list[Fault] = field(default_factory=list)
    stuck: Reading | None = None
    offline: bool = False


@dataclass
class _ActiveJam:
    jam: Jam
    hops: dict[int, int]


class TrafficEngine:
    def __init__(
        self,
        fleet: list[SensorSpec],
        config: EngineConfig,
        *,
        shard: int = 0,
        shards: int = 1,
    ) -> None:
        self.fleet = fleet
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.interval_payload = max(1, round(config.interval_s))
        self.index = {s.id: i for i, s in enumerate(fleet)}
        self.by_area: dict[str, list[int]] = {}
        for i, s in enumerate(fleet):
            self.by_area.setdefault(s.area_id, []).append(i)
        self.neighbours = [[self.index[n] for n in s.neighbours if n in self.index] for s in fleet]
        self.owned = [i for i in range(len(fleet)) if i % shards == shard]
        self.states = {i: SensorState() for i in self.owned}
        self.topics = {i: wire.observation_topic(fleet[i].id) for i in self.owned}
        self.local_time = {
            i: draw(sensor_key(config.seed, i), S_OFFSET) < config.local_time_share
            for i in self.owned
        }
        self.jams: dict[tuple[str, int], _ActiveJam] = {}
        self._affecting: dict[int, set[tuple[str, int]]] = {}
        self._retired: set[int] = set()
        self._command_jams = 0
        self._jams_checked_at = -math.inf
        self._due: list[tuple[float, int]] = []
        self.skipped = 0
        self.max_lag = 0.0

    # ---------------------------------------------------------------------------- schedule ---

    def start(self, now: float) -> None:
        """Schedule every owned sensor's first reading at its first phase point after ``now``."""
        interval = self.config.interval_s
        self._due = []
        for i in self.owned:
            ph = phase(self.config.seed, i, interval)
            k = math.ceil((now - ph) / interval)
            self._due.append((round(k * interval + ph, 3), i))
        heapq.heapify(self._due)

    def next_due(self) -> float:
        return self._due[0][0] if self._due else math.inf

    def advance(self, now: float) -> list[Action]:
        """Every reading due up to ``now``, in time order."""
        out: list[Action] = []
        interval = self.config.interval_s
        while self._due and self._due[0][0] <= now:
            t, i = heapq.heappop(self._due)
            lag = now - t
            if lag > MAX_LAG_READINGS * interval:
                missed = int(lag // interval)
                self.skipped += missed
                t = round(t + missed * interval, 3)
            else:
                self.max_lag = max(self.max_lag, lag)
                out.extend(self.step(i, t))
            heapq.heappush(self._due, (round(t + interval, 3), i))
        return out

    # ----------------------------------------------------------------------------- reading ---

    def step(self, i: int, t: float) -> list[Action]:
        """Sensor ``i`` reads at time ``t``: the actions that follow, faults applied."""
        cfg = self.config
        st = self.states[i]
        st.faults = [f for f in st.faults if not f.over(t)]
        if cfg.fault_rate > 0 and not any(f.random for f in st.faults):
            drawn = random_fault(
                cfg.seed,
                i,
                t,
                rate=cfg.fault_rate,
                kinds=cfg.fault_kinds,
                interval_s=cfg.interval_s,
            )
            if drawn is not None:
                st.faults.append(drawn)
        active = [f for f in st.faults if f.covers(t)]
        kinds = {f.kind for f in active}
        out: list[Action] = []
        if FaultKind.STORE_AND_FORWARD in kinds and not st.offline:
            st.offline = True
            out.append(GoOffline(i))
        elif FaultKind.STORE_AND_FORWARD not in kinds and st.offline:
            st.offline = False
            out.append(GoOnline(i))
        if FaultKind.SILENT in kinds:
            return out
        values = reading(
            self.fleet[i],
            i,
            t,
            seed=cfg.seed,
            interval_s=cfg.interval_s,
            tz=self.tz,
            jam=self.jam_at(i, t),
        )
        if FaultKind.STUCK in kinds:
            st.stuck = st.stuck or values
            values = st.stuck
        else:
            st.stuck = None
        skew = sum(f.skew_s for f in active if f.kind is FaultKind.CLOCK_SKEW)
        payloads = render(
            device_id=self.fleet[i].id,
            seq=st.seq,
            t=t,
            values=values,
            interval_s=self.interval_payload,
            local_time=self.local_time[i],
            kinds=kinds,
            skew_s=skew,
            variant=variant_of(cfg.seed, i, t),
        )
        st.seq += 1
        out.extend(Publish(i, self.topics[i], p, t) for p in payloads)
        return out

    # -------------------------------------------------------------------------------- jams ---

    def jam_at(self, i: int, t: float) -> tuple[float, float]:
        """(severity, jam speed) of the worst jam on sensor ``i`` at ``t``."""
        if self.config.congestion_per_hour > 0 and t - self._jams_checked_at >= 1.0:
            self._refresh_random_jams(t)
        worst = (0.0, 0.0)
        for key in self._affecting.get(i, ()):
            active = self.jams[key]
            severity = active.jam.severity(active.hops[i], t)
            if severity > worst[0]:
                worst = (severity, active.jam.speed_kmh)
        return worst

    def add_jam(self, key: tuple[str, int], origins: Iterable[int], jam: Jam) -> None:
        hops = spread(self.neighbours, origins, jam.hops)
        self.jams[key] = _ActiveJam(jam, hops)
        for i in hops:
            self._affecting.setdefault(i, set()).add(key)

    def _drop_jam(self, key: tuple[str, int]) -> None:
        for i in self.jams.pop(key).hops:
            keys = self._affecting.get(i)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._affecting[i]

    def _refresh_random_jams(self, t: float) -> None:
        """Random jams are a pure function of (seed, minute): every shard sees the same ones."""
        self._jams_checked_at = t
        for key in [k for k, a in self.jams.items() if a.jam.over_at < t]:
            self._drop_jam(key)
            if key[0] == "random":
                self._retired.add(key[1])
        longest = 300 + 900 + 3 * 120 / 2 + 60  # the longest a random jam can last (s)
        first = math.floor((t - longest) / JAM_SLOT_S)
        self._retired = {s for s in self._retired if s >= first}
        for slot in range(first, math.floor(t / JAM_SLOT_S) + 1):
            if ("random", slot) in self.jams or slot in self._retired:
                continue
            drawn = random_jam(
                self.config.seed, slot, len(self.fleet), self.config.congestion_per_hour
            )
            if drawn is not None and drawn[1].start <= t < drawn[1].over_at:
                self.add_jam(("random", slot), [drawn[0]], drawn[1])

    # ----------------------------------------------------------------------------- control ---

    def targets(self, area_id: str | None, device_ids: list[str] | None) -> list[int]:
        found = set(self.by_area.get(area_id or "", []))
        found.update(self.index[d] for d in device_ids or [] if d in self.index)
        return sorted(found)

    def control(self, cmd: wire.SimControl | wire.SimFault, now: float) -> int:
        """Apply a command from ``ioc/v1/sim/control``; returns how many sensors it touched."""
        targets = self.targets(cmd.area_id, cmd.device_ids)
        if isinstance(cmd, wire.SimControl):
            if cmd.action == "congestion":
                if targets:
                    self._command_jams += 1
                    jam = Jam(now, now + cmd.duration_s, cmd.speed_kmh, SPREAD_HOPS, SPREAD_DELAY_S)
                    self.add_jam(("command", self._command_jams), targets, jam)
                return len(targets)
            chosen = set(targets)
            for active in self.jams.values():
                j = active.jam
                if j.end > now and (not chosen or chosen.intersection(active.hops)):
                    active.jam = Jam(j.start, now, j.speed_kmh, j.hops, j.hop_delay_s)
            return len(targets) or len(self.fleet)
        if cmd.action == "fault":
            if cmd.kind is None:
                raise ValueError("a fault command needs a kind")
            kind = FaultKind(cmd.kind)
            for i in targets:
                if i in self.states:
                    self.states[i].faults.append(
                        Fault(kind, now, now + cmd.duration_s, skew_s=cmd.skew_s)
                    )
            return len(targets)
        for i in targets or list(self.states):
            if i in self.states:
                self.states[i].faults = []
        return len(targets) or len(self.fleet)
