"""What a traffic sensor reads at a given moment: a pure function of (sensor, time, seed, jam).

No state and no I/O, so the same seed and the same clock always give the same readings, and the
model is tested without a broker. Randomness comes from a counter-based hash (splitmix64) of
(seed, sensor, time, stream), never from a shared generator whose state depends on call order.

The shape of the numbers:

- demand follows the local-time day (Asia/Ho_Chi_Minh): quiet nights, a sharp morning peak
  (~07:15), a lunchtime bump (people go home to eat), the evening peak (~17:20); weekends lose
  the commute peaks, Saturday half-way;
- flow = capacity x demand x a per-sensor load factor x a slow (5-minute) drift;
- speed falls with volume/capacity (the BPR curve), never below ~70 % of free flow on its own:
  rush hour alone does not look like a jam;
- a jam (see :class:`Jam`) pulls speed towards the jam speed and density towards the jam
  density (Greenshields), so occupancy rises to 0.7-0.9 while fewer vehicles pass;
- intensity is a Poisson count of the flow over the interval.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from statistics import NormalDist

from ioc.domain.fleet import SensorSpec

_M64 = (1 << 64) - 1
_NORMAL = NormalDist()

# Hash streams: one per independent random quantity, so adding one never shifts the others.
S_LOAD, S_DRIFT, S_SPEED, S_COUNT, S_OCC, S_JAM_SPEED = 1, 2, 3, 4, 5, 6
S_PHASE, S_OFFSET, S_JAM_SLOT = 10, 11, 12
S_FAULT, S_FAULT_KIND, S_FAULT_LEN, S_FAULT_SKEW, S_FAULT_VARIANT = 20, 21, 22, 23, 24

DRIFT_BLOCK_S = 300
JAM_SLOT_S = 60


def _mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def u01(*parts: int) -> float:
    """A uniform number in [0, 1) determined only by ``parts``."""
    h = 0
    for p in parts:
        h = _mix(h ^ (p & _M64))
    return (h >> 11) * (1.0 / (1 << 53))


@functools.lru_cache(maxsize=1 << 16)
def sensor_key(seed: int, index: int) -> int:
    """The root of every draw for one sensor (cached: it is needed on every reading)."""
    return _mix(_mix(seed & _M64) ^ index)


def moment_key(seed: int, index: int, t: float) -> int:
    """The root of every draw for one sensor's reading at ``t``."""
    return _mix(sensor_key(seed, index) ^ millis(t))


def draw(key: int, stream: int) -> float:
    """A uniform number in [0, 1) for one random quantity (``stream``) under ``key``."""
    return (_mix(key ^ (stream << 56)) >> 11) * (1.0 / (1 << 53))


def gauss(u: float) -> float:
    return _NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))


def millis(t: float) -> int:
    """Times are keyed in whole milliseconds, so float noise never changes a draw."""
    return round(t * 1000)


def poisson(mean: float, u: float) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, round(mean + math.sqrt(mean) * gauss(u)))
    p = math.exp(-mean)
    cdf, k = p, 0
    while u > cdf and k < 1000:
        k += 1
        p *= mean / k
        cdf += p
    return k


def _bump(h: float, centre: float, width: float) -> float:
    return math.exp(-(((h - centre) / width) ** 2) / 2)


def demand(local: datetime) -> float:
    """Share of a road's capacity in use at this local time, before per-sensor factors."""
    h = local.hour + local.minute / 60 + local.second / 3600
    day = 1 / (1 + math.exp(-(h - 5.5) * 2.5)) / (1 + math.exp((h - 21.5) * 1.5))
    weekday = (
        0.05
        + 0.40 * day
        + 0.50 * _bump(h, 7.2, 0.7)
        + 0.15 * _bump(h, 11.6, 0.6)
        + 0.55 * _bump(h, 17.3, 0.9)
    )
    weekend = 0.05 + 0.40 * day + 0.12 * _bump(h, 9.0, 1.5) + 0.30 * _bump(h, 18.0, 1.5)
    w = {5: 0.6, 6: 1.0}.get(local.weekday(), 0.0)
    return (1 - w) * weekday + w * weekend


@functools.lru_cache(maxsize=4096)
def _demand_at(second: int, tz: tzinfo) -> float:
    return demand(datetime.fromtimestamp(second, tz))


@dataclass(frozen=True, slots=True)
class Reading:
    intensity: int  # vehicles in the interval
    average_speed: float  # km/h
    occupancy: float  # 0..1


@dataclass(frozen=True, slots=True)
class Jam:
    """A traffic jam that starts at its origins and spreads hop by hop along the road links.

    Hop ``h`` jams ``h * hop_delay_s`` after the start, less severely the further out it is;
    when the jam ends (``end``: its planned end, or earlier when cleared) the origins dissolve
    first and the wave of recovery follows outwards. A hop the jam had not reached by ``end``
    never jams.
    """

    start: float
    end: float
    speed_kmh: float
    hops: int = 2
    hop_delay_s: float = 90.0
    dissolve_s: float = 60.0

    def severity(self, hop: int, t: float) -> float:
        onset = self.start + hop * self.hop_delay_s
        if t < onset or onset >= self.end or hop > self.hops:
            return 0.0
        level = 1.0 - hop / (self.hops + 1)
        rise = 1.0 if hop == 0 else min(1.0, (t - onset) / (self.hop_delay_s / 2))
        stop = self.end + hop * self.hop_delay_s / 2
        fall = 1.0 if t <= stop else max(0.0, 1.0 - (t - stop) / self.dissolve_s)
        return level * rise * fall

    @property
    def over_at(self) -> float:
        """From this time on it affects nobody."""
        return self.end + self.hops * self.hop_delay_s / 2 + self.dissolve_s


def spread(
    neighbours: Sequence[Sequence[int]], origins: Iterable[int], hops: int
) -> dict[int, int]:
    """Hop distance from the nearest origin for every sensor within ``hops`` links (BFS)."""
    dist = {o: 0 for o in origins}
    queue = deque(dist)
    while queue:
        i = queue.popleft()
        if dist[i] >= hops:
            continue
        for j in neighbours[i]:
            if j not in dist:
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist


def random_jam(seed: int, slot: int, n_sensors: int, per_hour: float) -> tuple[int, Jam] | None:
    """The random jam starting in minute ``slot`` since the epoch, if any: (origin, jam)."""
    if per_hour <= 0 or n_sensors <= 0:
        return None
    if u01(seed, S_JAM_SLOT, slot) >= min(1.0, per_hour * JAM_SLOT_S / 3600):
        return None
    draw = [u01(seed, S_JAM_SLOT, slot, k) for k in range(1, 7)]
    start = slot * JAM_SLOT_S + draw[1] * JAM_SLOT_S
    return int(draw[0] * n_sensors), Jam(
        start=start,
        end=start + 300 + draw[2] * 900,
        speed_kmh=round(4 + draw[3] * 10, 1),
        hops=1 + int(draw[4] * 3),
        hop_delay_s=45 + draw[5] * 75,
    )


def phase(seed: int, index: int, interval_s: float) -> float:
    """Each sensor reads at its own offset within the interval (ms resolution), so a fleet's
    readings are spread over the interval instead of arriving in one burst."""
    return round(draw(sensor_key(seed, index), S_PHASE) * interval_s, 3)


def reading(
    spec: SensorSpec,
    index: int,
    t: float,
    *,
    seed: int,
    interval_s: float,
    tz: tzinfo,
    jam: tuple[float, float] = (0.0, 0.0),
) -> Reading:
    """The values sensor ``index`` reports for the interval ending at epoch time ``t``.

    ``jam`` is (severity 0..1, jam speed km/h), worked out by the caller from the active jams.
    """
    sk = sensor_key(seed, index)
    mk = moment_key(seed, index, t)
    cap = float(spec.capacity_vph)
    free = spec.free_flow_kmh
    load = 0.65 + 0.4 * draw(sk, S_LOAD)
    block, frac = divmod(t / DRIFT_BLOCK_S, 1.0)
    z0 = gauss(draw(_mix(sk ^ int(block)), S_DRIFT))
    z1 = gauss(draw(_mix(sk ^ (int(block) + 1)), S_DRIFT))
    w = (1 - math.cos(math.pi * frac)) / 2
    drift = 1 + 0.08 * ((1 - w) * z0 + w * z1)
    flow = cap * min(1.1, max(0.005, _demand_at(int(t), tz) * load * drift))
    speed = free / (1 + 0.3 * (flow / cap) ** 4)
    speed *= 1 + 0.04 * gauss(draw(mk, S_SPEED))
    k_jam = 4 * cap / free  # jam density, veh/km (Greenshields: capacity = free * k_jam / 4)
    density = flow / max(speed, 1.0)
    severity, jam_speed = jam
    if severity > 0:
        v_jam = max(0.0, jam_speed + 0.8 * gauss(draw(mk, S_JAM_SPEED)))
        d_jam = k_jam * max(0.0, 1 - v_jam / free)
        speed = (1 - severity) * speed + severity * v_jam
        flow = (1 - severity) * flow + severity * v_jam * d_jam
        density = (1 - severity) * density + severity * d_jam
    occupancy = density / k_jam * (1 + 0.03 * gauss(draw(mk, S_OCC)))
    mean_count = flow * interval_s / 3600
    return Reading(
        intensity=poisson(mean_count, draw(mk, S_COUNT)),
        average_speed=round(min(300.0, max(0.0, speed)), 1),
        occupancy=round(min(0.98, max(0.0, occupancy)), 3),
    )
