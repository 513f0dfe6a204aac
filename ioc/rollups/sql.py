"""The SQL that recomputes rollup buckets from the raw hypertables. Hand-written; the table
names come from the fixed levels in ``levels.py``, never from input.

Every statement recomputes whole buckets from raw readings (never adds to a stored value), so
running it twice, or again after late readings arrived, gives the right answer.

Rows are written in time order. A live tick writes a minute or two anyway; a catch-up over
hours or days (a restart, a backfill, the benchmark's build) would otherwise lay each day out
sensor by sensor, and reading every sensor's last 15 minutes would touch a page per row
(measured at 2,000 sensors: 11,500 pages and 120 ms, against 220 pages and 15 ms).
"""

from __future__ import annotations

from ioc.rollups.levels import CONGESTED_BELOW, DEFAULT_FREE_FLOW_KMH, Level

TRAFFIC_VALUES = (
    "readings, volume, speed_sum, speed_min, speed_max, occupancy_sum, speed_p50, speed_p85"
)
_UPDATE_VALUES = ", ".join(f"{c} = excluded.{c}" for c in TRAFFIC_VALUES.split(", "))

# Raw readings aggregated into one bucket. The same expressions serve the app path and the
# continuous aggregates (licence.py), so both give identical numbers.
RAW_SUMS = """count(*)::integer AS readings,
       sum(o.intensity)::bigint AS volume,
       sum(o.average_speed::float8) AS speed_sum,
       min(o.average_speed) AS speed_min,
       max(o.average_speed) AS speed_max,
       sum(o.occupancy::float8) AS occupancy_sum"""
RAW_PERCENTILES = """percentile_cont(0.5) WITHIN GROUP (ORDER BY o.average_speed) AS speed_p50,
       percentile_cont(0.85) WITHIN GROUP (ORDER BY o.average_speed) AS speed_p85"""
# Finer rollup rows added up into a coarser bucket: exact for every stored column but the
# percentiles, which are computed from raw readings once the bucket has closed.
ROLLUP_SUMS = """sum(s.readings)::integer, sum(s.volume)::bigint, sum(s.speed_sum),
       min(s.speed_min), max(s.speed_max), sum(s.occupancy_sum)"""

FREE_FLOW = f"coalesce((d.metadata->>'free_flow_kmh')::float8, {DEFAULT_FREE_FLOW_KMH})"

# Readings received in (lo, hi], by sensor and minute. Filled once per tick; every level's
# dirty buckets are derived from it.
NEW_READINGS = """
CREATE TEMP TABLE rollup_new ON COMMIT DROP AS
SELECT device_id, time_bucket('1 minute', time) AS bucket, count(*)::bigint AS n
FROM traffic_observations
WHERE received_at > %(lo)s AND received_at <= %(hi)s
GROUP BY 1, 2"""


def _dirty_sensors(level: Level) -> str:
    return f"""(SELECT DISTINCT device_id, time_bucket('{level.interval}', bucket) AS bucket
      FROM rollup_new WHERE bucket >= %(t0)s AND bucket < %(t1)s) k"""


def _dirty_areas(level: Level) -> str:
    return f"""(SELECT DISTINCT c.ancestor_id AS area_id,
             time_bucket('{level.interval}', n.bucket) AS bucket
      FROM rollup_new n
      JOIN devices d ON d.id = n.device_id
      JOIN area_closure c ON c.area_id = d.area_id
      WHERE n.bucket >= %(t0)s AND n.bucket < %(t1)s) k"""


def sensor_from_raw(level: Level) -> str:
    """The finest per-sensor level, from raw readings (no percentiles: a minute holds one
    reading at the usual rate)."""
    return f"""
INSERT INTO traffic_sensor_{level.name} (bucket, device_id, {TRAFFIC_VALUES})
SELECT k.bucket, k.device_id, {RAW_SUMS}, NULL, NULL
FROM {_dirty_sensors(level)}
JOIN traffic_observations o
  ON o.device_id = k.device_id AND time_bucket('{level.interval}', o.time) = k.bucket
 AND o.time >= k.bucket AND o.time < k.bucket + interval '{level.interval}'
WHERE o.time >= %(t0)s AND o.time < %(t1)s
GROUP BY k.bucket, k.device_id
ORDER BY k.bucket
ON CONFLICT (device_id, bucket) DO UPDATE SET {_UPDATE_VALUES}"""


def sensor_from_finer(level: Level, finer: Level) -> str:
    """A coarser per-sensor level from the finer one; percentiles reset (see percentiles())."""
    return f"""
INSERT INTO traffic_sensor_{level.name} (bucket, device_id, {TRAFFIC_VALUES})
SELECT k.bucket, k.device_id, {ROLLUP_SUMS}, NULL, NULL
FROM {_dirty_sensors(level)}
JOIN traffic_sensor_{finer.name} s
  ON s.device_id = k.device_id AND time_bucket('{level.interval}', s.bucket) = k.bucket
WHERE s.bucket >= %(t0)s AND s.bucket < %(t1)s
GROUP BY k.bucket, k.device_id
ORDER BY k.bucket
ON CONFLICT (device_id, bucket) DO UPDATE SET {_UPDATE_VALUES}"""


def area_from_sensors(level: Level) -> str:
    """Per-area buckets from the per-sensor rows of the same level: each area covers every
    sensor of its subtree; a sensor is congested when its mean speed in the bucket is below
    the threshold share of its free-flow speed."""
    return f"""
INSERT INTO traffic_area_{level.name} (bucket, area_id, sensors, congested, {TRAFFIC_VALUES})
SELECT k.bucket, k.area_id, count(*)::integer,
       (count(*) FILTER (WHERE s.speed_sum / s.readings < {CONGESTED_BELOW} * {FREE_FLOW}))::integer,
       {ROLLUP_SUMS}, NULL, NULL
FROM {_dirty_areas(level)}
JOIN area_closure c ON c.ancestor_id = k.area_id
JOIN devices d ON d.area_id = c.area_id AND d.kind = 'traffic_sensor'
JOIN traffic_sensor_{level.name} s ON s.device_id = d.id AND s.bucket = k.bucket
WHERE s.bucket >= %(t0)s AND s.bucket < %(t1)s
GROUP BY k.bucket, k.area_id
ORDER BY k.bucket
ON CONFLICT (area_id, bucket) DO UPDATE
SET sensors = excluded.sensors, congested = excluded.congested, {_UPDATE_VALUES}"""


def area_from_raw(level: Level) -> str:
    """Per-area buckets straight from raw readings: the path when the per-sensor levels are
    continuous aggregates (their materialisation may lag behind late readings)."""
    return f"""
WITH r AS MATERIALIZED (
    SELECT k.area_id, k.bucket, o.device_id, o.intensity, o.average_speed, o.occupancy,
           {FREE_FLOW} AS free_flow
    FROM {_dirty_areas(level)}
    JOIN area_closure c ON c.ancestor_id = k.area_id
    JOIN devices d ON d.area_id = c.area_id AND d.kind = 'traffic_sensor'
    JOIN traffic_observations o
      ON o.device_id = d.id AND time_bucket('{level.interval}', o.time) = k.bucket
     AND o.time >= k.bucket AND o.time < k.bucket + interval '{level.interval}'
    WHERE o.time >= %(t0)s AND o.time < %(t1)s),
per AS (
    SELECT area_id, bucket, avg(average_speed) < {CONGESTED_BELOW} * min(free_flow) AS congested
    FROM r GROUP BY area_id, bucket, device_id),
cg AS (
    SELECT area_id, bucket, count(*)::integer AS sensors,
           (count(*) FILTER (WHERE congested))::integer AS congested
    FROM per GROUP BY area_id, bucket),
agg AS (SELECT area_id, bucket, {RAW_SUMS} FROM r o GROUP BY area_id, bucket)
INSERT INTO traffic_area_{level.name} (bucket, area_id, sensors, congested, {TRAFFIC_VALUES})
SELECT agg.bucket, agg.area_id, cg.sensors, cg.congested, agg.readings, agg.volume,
       agg.speed_sum, agg.speed_min, agg.speed_max, agg.occupancy_sum, NULL, NULL
FROM agg JOIN cg USING (area_id, bucket)
ORDER BY agg.bucket
ON CONFLICT (area_id, bucket) DO UPDATE
SET sensors = excluded.sensors, congested = excluded.congested, {_UPDATE_VALUES}"""


PENDING_TABLE = """CREATE TEMP TABLE IF NOT EXISTS rollup_pending (key text, bucket timestamptz)
ON COMMIT DELETE ROWS"""


def pending_percentiles(kind: str, level: Level) -> str:
    """Closed buckets whose percentiles are still to be computed (new, or reopened by late
    readings), copied to rollup_pending. kind: 'sensor' or 'area'."""
    key = "device_id" if kind == "sensor" else "area_id"
    return f"""
INSERT INTO rollup_pending (key, bucket)
SELECT {key}, bucket FROM traffic_{kind}_{level.name}
WHERE speed_p50 IS NULL AND bucket >= %(h)s
  AND bucket <= %(bound)s - interval '{level.interval}'"""


def percentiles(kind: str, level: Level) -> str:
    """Exact p50/p85 of the speeds read in each bucket of rollup_pending within [t0, t1).
    Computed once per closed bucket: percentiles cannot be added up like sums."""
    key = "device_id" if kind == "sensor" else "area_id"
    members = (
        "JOIN traffic_observations o ON o.device_id = x.key"
        if kind == "sensor"
        else """JOIN area_closure c ON c.ancestor_id = x.key
    JOIN devices d ON d.area_id = c.area_id AND d.kind = 'traffic_sensor'
    JOIN traffic_observations o ON o.device_id = d.id"""
    )
    return f"""
WITH p AS (
    SELECT x.key, x.bucket, {RAW_PERCENTILES}
    FROM rollup_pending x
    {members} AND time_bucket('{level.interval}', o.time) = x.bucket
     AND o.time >= x.bucket AND o.time < x.bucket + interval '{level.interval}'
    WHERE x.bucket >= %(t0)s AND x.bucket < %(t1)s AND o.time >= %(t0)s AND o.time < %(t1)s
    GROUP BY x.key, x.bucket)
UPDATE traffic_{kind}_{level.name} x SET speed_p50 = p.speed_p50, speed_p85 = p.speed_p85
FROM p WHERE x.{key} = p.key AND x.bucket = p.bucket"""


# Availability of every area (subtree included) and device kind in the given 5-minute slots,
# [t0, t1) bounding them. A device counts from its creation; a slot touched by a maintenance
# window of the device, or of an area above it, is not expected (and not counted up).
AVAILABILITY = """
WITH slots AS (SELECT unnest(%(slots)s::timestamptz[]) AS s),
devs AS (
    SELECT id, kind, area_id, created_at FROM devices
    WHERE enabled AND kind IN ('traffic_sensor', 'camera')),
m AS (
    SELECT device_id, area_id, starts_at,
           least(ends_at, coalesce(cancelled_at, ends_at)) AS ends_at
    FROM maintenance
    WHERE starts_at < %(t1)s AND least(ends_at, coalesce(cancelled_at, ends_at)) > %(t0)s),
win AS (
    SELECT m.device_id, m.starts_at, m.ends_at FROM m WHERE m.device_id IS NOT NULL
    UNION ALL
    SELECT d.id, m.starts_at, m.ends_at
    FROM m JOIN area_closure c ON c.ancestor_id = m.area_id
    JOIN devs d ON d.area_id = c.area_id
    WHERE m.device_id IS NULL),
up AS (
    SELECT DISTINCT o.device_id, sl.s
    FROM traffic_observations o JOIN slots sl ON sl.s = time_bucket('5 minutes', o.time)
    WHERE o.time >= %(t0)s AND o.time < %(t1)s
    UNION
    SELECT DISTINCT h.device_id, sl.s
    FROM camera_health h JOIN slots sl ON sl.s = time_bucket('5 minutes', h.time)
    WHERE h.time >= %(t0)s AND h.time < %(t1)s AND h.status = 'ok'),
away AS (
    SELECT DISTINCT w.device_id, sl.s
    FROM win w JOIN slots sl ON w.starts_at < sl.s + interval '5 minutes' AND w.ends_at > sl.s),
ds AS (
    SELECT d.id, d.kind, d.area_id, sl.s, (a.device_id IS NOT NULL) AS maint
    FROM devs d JOIN slots sl ON d.created_at < sl.s + interval '5 minutes'
    LEFT JOIN away a ON a.device_id = d.id AND a.s = sl.s)
SELECT ds.s AS bucket, c.ancestor_id AS area_id, ds.kind,
       count(*)::integer AS devices,
       (count(*) FILTER (WHERE NOT ds.maint))::integer AS slots_expected,
       (count(*) FILTER (WHERE NOT ds.maint AND up.device_id IS NOT NULL))::integer AS slots_up,
       (count(*) FILTER (WHERE ds.maint))::integer AS slots_maintenance
FROM ds
JOIN area_closure c ON c.area_id = ds.area_id
LEFT JOIN up ON up.device_id = ds.id AND up.s = ds.s
GROUP BY 1, 2, 3
ORDER BY 1"""

AVAILABILITY_COLUMNS = "bucket, area_id, kind, devices, slots_expected, slots_up, slots_maintenance"

AVAILABILITY_HOURS = f"""
INSERT INTO availability_area_1h ({AVAILABILITY_COLUMNS})
SELECT time_bucket('1 hour', bucket), area_id, kind, max(devices), sum(slots_expected),
       sum(slots_up), sum(slots_maintenance)
FROM availability_area_5m
WHERE bucket >= %(t0)s AND bucket < %(t1)s
  AND time_bucket('1 hour', bucket) = ANY(%(hours)s::timestamptz[])
GROUP BY 1, 2, 3"""
