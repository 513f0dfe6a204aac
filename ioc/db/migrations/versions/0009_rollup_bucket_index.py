"""An index on the per-sensor 1-minute rollup's time alone: the leader summary reads the last
15 minutes of every sensor in the province (about 30,000 rows at 2,000 sensors). Through the
(device_id, bucket) key that was one index probe per sensor (about 60 ms); by time it is one
range scan of the newest chunk.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS traffic_sensor_1m_bucket ON traffic_sensor_1m (bucket)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS traffic_sensor_1m_bucket")
