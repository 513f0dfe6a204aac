"""Past camera thumbnails, kept only when history is enabled (IOC_THUMBNAIL_HISTORY_HOURS > 0).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26

Camera pictures of people are personal data (docs/privacy.md). By default the centre keeps only
each camera's latest picture (``camera_thumbnails``, 0002) and this table stays empty. When the
province enables history, the camera workers add one picture per camera at most every
IOC_THUMBNAIL_HISTORY_EVERY_SECONDS, already masked, and ``ioc rollups`` drops whole chunks once
they are older than the configured hours, as for every other hypertable (retention.py). One-hour
chunks, so retention given in hours keeps at most about an hour more than it says.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE camera_thumbnail_history (
    device_id  text NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    taken_at   timestamptz NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    jpeg       bytea NOT NULL,
    PRIMARY KEY (device_id, taken_at)
);
SELECT create_hypertable('camera_thumbnail_history', 'taken_at',
    chunk_time_interval => interval '1 hour', create_default_indexes => false);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS camera_thumbnail_history;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
