"""Initial schema: areas, devices, observations (hypertables), device state, alerts, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = """
CREATE EXTENSION IF NOT EXISTS timescaledb;

-- Areas: a tree of any depth (province > district > commune > ...), loaded from a file.
CREATE TABLE areas (
    id          text PRIMARY KEY,
    parent_id   text REFERENCES areas (id) ON DELETE RESTRICT,
    name        text NOT NULL,
    name_en     text NOT NULL,
    level       text NOT NULL,
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    depth       integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX areas_parent_idx ON areas (parent_id);

CREATE TABLE devices (
    id          text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('traffic_sensor', 'camera')),
    name        text NOT NULL,
    area_id     text NOT NULL REFERENCES areas (id),
    lat         double precision NOT NULL,
    lon         double precision NOT NULL,
    parent_id   text REFERENCES devices (id),       -- topology: a site link or power feed
    metadata    jsonb NOT NULL DEFAULT '{}'::jsonb,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX devices_area_idx ON devices (area_id);

-- Traffic observations: one row per sensor reading. The unique key absorbs QoS 1 redelivery.
CREATE TABLE traffic_observations (
    time           timestamptz NOT NULL,
    device_id      text NOT NULL,
    seq            bigint NOT NULL,
    intensity      integer NOT NULL,
    average_speed  real NOT NULL,
    occupancy      real NOT NULL,
    interval_s     integer NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now()
);
SELECT create_hypertable('traffic_observations', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX traffic_observations_key ON traffic_observations (device_id, seq, time);
CREATE INDEX traffic_observations_device_time ON traffic_observations (device_id, time DESC);

CREATE TABLE camera_health (
    time         timestamptz NOT NULL,
    device_id    text NOT NULL,
    connected    boolean NOT NULL,
    fps          real,
    frozen       boolean,
    black        boolean,
    blur         real,
    tamper       boolean,
    scene_shift  boolean,
    status       text NOT NULL,
    reasons      jsonb NOT NULL DEFAULT '[]'::jsonb
);
SELECT create_hypertable('camera_health', 'time', chunk_time_interval => interval '1 day');
CREATE UNIQUE INDEX camera_health_key ON camera_health (device_id, time);

-- Latest known state per device, upserted by the ingest workers (one row per device).
CREATE TABLE device_state (
    device_id   text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    last_seen   timestamptz NOT NULL,
    last_seq    bigint,
    last        jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    rule_id          text NOT NULL,
    device_id        text NOT NULL REFERENCES devices (id),
    area_id          text NOT NULL REFERENCES areas (id),
    severity         text NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'info')),
    status           text NOT NULL CHECK (status IN
                       ('pending', 'firing', 'acknowledged', 'resolved', 'suppressed', 'flapping')),
    title            text NOT NULL,
    title_en         text NOT NULL,
    value            double precision,
    started_at       timestamptz NOT NULL DEFAULT now(),
    fired_at         timestamptz,
    acknowledged_at  timestamptz,
    acknowledged_by  text,
    ack_note         text,
    resolved_at      timestamptz,
    resolved_by      text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
-- One open alert per (rule, device), enforced by the database: two engines racing cannot
-- both open one (INSERT ... ON CONFLICT DO NOTHING against this index).
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_id, device_id) WHERE status <> 'resolved';
CREATE INDEX alerts_open_idx ON alerts (status) WHERE status <> 'resolved';

-- Append-only audit trail and the live stream's cursor. Writers take a transaction-level
-- advisory lock before inserting, so ids become visible in commit order (no reader can see
-- id N+1 before id N): a client resuming "after N" never misses an event.
CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    time        timestamptz NOT NULL DEFAULT now(),
    kind        text NOT NULL,
    alert_id    bigint REFERENCES alerts (id),
    device_id   text,
    area_id     text,
    severity    text,
    actor       text NOT NULL DEFAULT 'system',
    payload     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- Rejected input, kept with its reason so nothing is lost silently.
CREATE TABLE dead_letters (
    id           bigserial PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    source       text NOT NULL,
    topic        text,
    reason       text NOT NULL,
    detail       text,
    payload      bytea
);
CREATE INDEX dead_letters_reason_idx ON dead_letters (reason, received_at DESC);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS dead_letters, events, alerts, device_state, camera_health,
    traffic_observations, devices, areas CASCADE;
DROP FUNCTION IF EXISTS events_append_only();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
