"""Role heartbeats: a role notes here, now and then, that its loop is doing its work, so another
process (the API's ``GET /api/v1/freshness``) can tell how fresh that work is. One row per role:
with several instances, the newest beat wins.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE role_heartbeats (
    role      text PRIMARY KEY,                 -- e.g. 'alerts'
    at        timestamptz NOT NULL DEFAULT now(),
    instance  text NOT NULL DEFAULT '',         -- host:pid of the last writer
    detail    jsonb NOT NULL DEFAULT '{}'::jsonb
);
"""

DOWNGRADE = """
DROP TABLE IF EXISTS role_heartbeats;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
