"""Device availability (Last Will) and stuck-value tracking in device_state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE device_state ALTER COLUMN last_seen DROP NOT NULL;
        ALTER TABLE device_state
            ADD COLUMN online boolean,               -- from the retained availability topic / LWT
            ADD COLUMN availability_at timestamptz,
            ADD COLUMN stuck_count integer NOT NULL DEFAULT 0;  -- batches with unchanged values
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE device_state DROP COLUMN online, DROP COLUMN availability_at,
            DROP COLUMN stuck_count;
        DELETE FROM device_state WHERE last_seen IS NULL;
        ALTER TABLE device_state ALTER COLUMN last_seen SET NOT NULL;
        """
    )
