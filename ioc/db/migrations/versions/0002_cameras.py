"""Cameras: worker heartbeats, leases, the latest thumbnail and each camera's learned baseline.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Cameras are rows of ``devices`` (kind 'camera'); their stream URL (without credentials) and
worker pool are in ``devices.metadata``. Health history goes to the ``camera_health``
hypertable of 0001, the latest state to ``device_state``.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = """
-- Camera-health workers announce themselves here; live = expires_at in the future. The fair
-- share of cameras per worker is ceil(cameras in the pool / live workers in the pool).
CREATE TABLE camera_workers (
    worker_id     text PRIMARY KEY,
    pool          text NOT NULL DEFAULT 'default',
    hostname      text NOT NULL,
    pid           integer NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX camera_workers_pool_idx ON camera_workers (pool, expires_at);

-- One lease per camera. A worker acquires or renews with one conditional UPDATE
-- (... WHERE holder IS NULL OR expires_at < now() OR holder = me ... RETURNING), so two
-- workers never both hold a camera; a dead worker's leases simply expire.
CREATE TABLE camera_leases (
    device_id    text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    holder       text,
    expires_at   timestamptz NOT NULL DEFAULT '-infinity',
    acquired_at  timestamptz,
    generation   bigint NOT NULL DEFAULT 0    -- bumped at every change of holder
);
CREATE INDEX camera_leases_holder_idx ON camera_leases (holder);

-- Only the latest picture per camera, updated in place: camera pictures of people are
-- personal data, so no history is kept. Served to signed-in users only.
CREATE TABLE camera_thumbnails (
    device_id  text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    taken_at   timestamptz NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    jpeg       bytea NOT NULL
);

-- What the camera looks like when healthy (sharpness, texture per block, a coarse band-passed
-- reference picture: 80x45 floats, no recognisable image): learned once, kept across workers.
CREATE TABLE camera_baselines (
    device_id   text PRIMARY KEY REFERENCES devices (id) ON DELETE CASCADE,
    learned_at  timestamptz NOT NULL DEFAULT now(),
    meta        jsonb NOT NULL,
    reference   bytea NOT NULL
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS camera_baselines, camera_thumbnails, camera_leases, camera_workers;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
