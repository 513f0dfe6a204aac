"""Rollups: traffic per sensor and per area at 1 min, 15 min and 1 h; availability per area at
5 min and 1 h; the bookkeeping of the ``ioc rollups`` role that maintains them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

The tables are maintained by the application (``ioc.rollups``), which works on the Apache
edition of TimescaleDB. On a server whose licence is 'timescale' the role also creates
continuous aggregates for the per-sensor levels (``*_ca``, see ioc/rollups/licence.py): those
depend on the server, not on the schema version, so they are not created here.

Every rollup table is a hypertable, so retention drops whole chunks (``drop_chunks``).
Sums are stored rather than means, so any range can be added up exactly from the buckets.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TRAFFIC_COLUMNS = """
    readings       integer NOT NULL,             -- readings in the bucket
    volume         bigint NOT NULL,              -- vehicles: sum of intensity
    speed_sum      double precision NOT NULL,    -- mean speed = speed_sum / readings
    speed_min      real NOT NULL,
    speed_max      real NOT NULL,
    occupancy_sum  double precision NOT NULL,    -- mean occupancy = occupancy_sum / readings
    speed_p50      double precision,             -- exact (percentile_cont) over the readings,
    speed_p85      double precision              -- 15 min and 1 h only, once the bucket closed
"""

UPGRADE = f"""
-- Every area with itself and each area above it (areas form a tree of any depth): an area's
-- figures cover its whole subtree. Recursion is bounded, so a bad parent loop cannot hang.
CREATE VIEW area_closure AS
WITH RECURSIVE up (area_id, ancestor_id, depth) AS (
    SELECT id, id, 0 FROM areas
    UNION ALL
    SELECT up.area_id, a.parent_id, up.depth + 1
    FROM up JOIN areas a ON a.id = up.ancestor_id
    WHERE a.parent_id IS NOT NULL AND up.depth < 32
)
SELECT area_id, ancestor_id, depth FROM up;

-- New readings are found by the time they were received. received_at grows with the order
-- rows are written, so a BRIN index skips all but the newest pages and costs the writer
-- next to nothing (pages not yet summarised are always read: nothing is missed).
CREATE INDEX traffic_observations_received_brin ON traffic_observations
    USING brin (received_at) WITH (pages_per_range = 32, autosummarize = on);

CREATE TABLE traffic_sensor_1m (
    bucket timestamptz NOT NULL, device_id text NOT NULL, {TRAFFIC_COLUMNS});
CREATE TABLE traffic_sensor_15m (
    bucket timestamptz NOT NULL, device_id text NOT NULL, {TRAFFIC_COLUMNS});
CREATE TABLE traffic_sensor_1h (
    bucket timestamptz NOT NULL, device_id text NOT NULL, {TRAFFIC_COLUMNS});
SELECT create_hypertable('traffic_sensor_1m', 'bucket',
    chunk_time_interval => interval '1 day', create_default_indexes => false);
SELECT create_hypertable('traffic_sensor_15m', 'bucket',
    chunk_time_interval => interval '7 days', create_default_indexes => false);
SELECT create_hypertable('traffic_sensor_1h', 'bucket',
    chunk_time_interval => interval '30 days', create_default_indexes => false);
CREATE UNIQUE INDEX traffic_sensor_1m_key ON traffic_sensor_1m (device_id, bucket);
CREATE UNIQUE INDEX traffic_sensor_15m_key ON traffic_sensor_15m (device_id, bucket);
CREATE UNIQUE INDEX traffic_sensor_1h_key ON traffic_sensor_1h (device_id, bucket);

-- Per area (each area of the tree, its subtree included). sensors = sensors with a reading in
-- the bucket; congested = of those, the ones whose mean speed in the bucket was below half
-- their free-flow speed (the dashboard's definition).
CREATE TABLE traffic_area_1m (
    bucket timestamptz NOT NULL, area_id text NOT NULL,
    sensors integer NOT NULL, congested integer NOT NULL, {TRAFFIC_COLUMNS});
CREATE TABLE traffic_area_15m (
    bucket timestamptz NOT NULL, area_id text NOT NULL,
    sensors integer NOT NULL, congested integer NOT NULL, {TRAFFIC_COLUMNS});
CREATE TABLE traffic_area_1h (
    bucket timestamptz NOT NULL, area_id text NOT NULL,
    sensors integer NOT NULL, congested integer NOT NULL, {TRAFFIC_COLUMNS});
SELECT create_hypertable('traffic_area_1m', 'bucket',
    chunk_time_interval => interval '7 days', create_default_indexes => false);
SELECT create_hypertable('traffic_area_15m', 'bucket',
    chunk_time_interval => interval '30 days', create_default_indexes => false);
SELECT create_hypertable('traffic_area_1h', 'bucket',
    chunk_time_interval => interval '90 days', create_default_indexes => false);
CREATE UNIQUE INDEX traffic_area_1m_key ON traffic_area_1m (area_id, bucket);
CREATE UNIQUE INDEX traffic_area_15m_key ON traffic_area_15m (area_id, bucket);
CREATE UNIQUE INDEX traffic_area_1h_key ON traffic_area_1h (area_id, bucket);
-- Percentiles are computed once a bucket has closed: these find the buckets still without.
CREATE INDEX traffic_sensor_15m_pending ON traffic_sensor_15m (bucket) WHERE speed_p50 IS NULL;
CREATE INDEX traffic_sensor_1h_pending ON traffic_sensor_1h (bucket) WHERE speed_p50 IS NULL;
CREATE INDEX traffic_area_15m_pending ON traffic_area_15m (bucket) WHERE speed_p50 IS NULL;
CREATE INDEX traffic_area_1h_pending ON traffic_area_1h (bucket) WHERE speed_p50 IS NULL;

-- Availability per area and device kind ('traffic_sensor' or 'camera'), in 5-minute slots
-- (the dashboard's unit) and per hour. A device-slot is expected unless a maintenance window
-- touches it; it is up when the sensor sent a reading, or the camera had a good picture
-- (camera_health status 'ok'), in the slot.
CREATE TABLE availability_area_5m (
    bucket             timestamptz NOT NULL,
    area_id            text NOT NULL,
    kind               text NOT NULL,
    devices            integer NOT NULL,    -- enabled devices that existed in the slot
    slots_expected     integer NOT NULL,    -- device-slots outside maintenance
    slots_up           integer NOT NULL,
    slots_maintenance  integer NOT NULL
);
CREATE TABLE availability_area_1h (LIKE availability_area_5m INCLUDING ALL);
SELECT create_hypertable('availability_area_5m', 'bucket',
    chunk_time_interval => interval '30 days', create_default_indexes => false);
SELECT create_hypertable('availability_area_1h', 'bucket',
    chunk_time_interval => interval '90 days', create_default_indexes => false);
CREATE UNIQUE INDEX availability_area_5m_key ON availability_area_5m (area_id, kind, bucket);
CREATE UNIQUE INDEX availability_area_1h_key ON availability_area_1h (area_id, kind, bucket);
CREATE INDEX availability_area_5m_bucket ON availability_area_5m (bucket);
CREATE INDEX availability_area_1h_bucket ON availability_area_1h (bucket);

-- Where the maintainer is. 'traffic': readings received up to watermark are rolled up;
-- 'availability': slots ending at or before watermark are computed (NULL: not started). too_late counts readings
-- that arrived for a time whose raw data retention has already dropped (not rolled up).
CREATE TABLE rollup_state (
    name        text PRIMARY KEY,
    watermark   timestamptz,
    too_late    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO rollup_state (name, watermark) VALUES ('traffic', NULL), ('availability', NULL);

-- Time ranges whose availability must be computed again: a maintenance window added, changed
-- or cancelled afterwards ('maintenance'), or late readings ('late'). Consumed by the role in
-- the same transaction that recomputes them.
CREATE TABLE rollup_dirty (
    id          bigserial PRIMARY KEY,
    reason      text NOT NULL CHECK (reason IN ('maintenance', 'late')),
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION rollup_note_maintenance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO rollup_dirty (reason, starts_at, ends_at)
        VALUES ('maintenance', OLD.starts_at, OLD.ends_at);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO rollup_dirty (reason, starts_at, ends_at)
        VALUES ('maintenance', NEW.starts_at, NEW.ends_at);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER maintenance_rollup_dirty AFTER INSERT OR UPDATE OR DELETE ON maintenance
    FOR EACH ROW EXECUTE FUNCTION rollup_note_maintenance();
"""

# TimescaleDB drops one hypertable (or continuous aggregate) per statement.
DOWNGRADE = """
-- The continuous aggregates the role creates on a 'timescale'-licence server, if any.
DROP MATERIALIZED VIEW IF EXISTS traffic_sensor_1h_ca;
DROP MATERIALIZED VIEW IF EXISTS traffic_sensor_15m_ca;
DROP MATERIALIZED VIEW IF EXISTS traffic_sensor_1m_ca;
DROP TRIGGER IF EXISTS maintenance_rollup_dirty ON maintenance;
DROP FUNCTION IF EXISTS rollup_note_maintenance();
DROP TABLE IF EXISTS rollup_dirty, rollup_state;
DROP TABLE IF EXISTS availability_area_1h;
DROP TABLE IF EXISTS availability_area_5m;
DROP TABLE IF EXISTS traffic_area_1h;
DROP TABLE IF EXISTS traffic_area_15m;
DROP TABLE IF EXISTS traffic_area_1m;
DROP TABLE IF EXISTS traffic_sensor_1h;
DROP TABLE IF EXISTS traffic_sensor_15m;
DROP TABLE IF EXISTS traffic_sensor_1m;
DROP INDEX IF EXISTS traffic_observations_received_brin;
DROP VIEW IF EXISTS area_closure;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
