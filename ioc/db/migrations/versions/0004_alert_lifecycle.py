"""Alert lifecycle: escalation, suppression (maintenance, root cause), flapping, assignment;
maintenance windows; site devices (a link or power feed that others depend on).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
        ALTER TABLE devices ADD CONSTRAINT devices_kind_check
            CHECK (kind IN ('traffic_sensor', 'camera', 'site'));
        CREATE INDEX devices_parent_idx ON devices (parent_id) WHERE parent_id IS NOT NULL;

        ALTER TABLE alerts
            ADD COLUMN base_severity text,            -- the rule's severity before escalation
            ADD COLUMN escalated boolean NOT NULL DEFAULT false,
            ADD COLUMN escalated_at timestamptz,
            ADD COLUMN suppressed_by text,            -- 'maintenance' or 'alert:<id>'
            ADD COLUMN parent_alert_id bigint REFERENCES alerts (id),
            ADD COLUMN last_breach_at timestamptz,    -- flapping: last time it was bad
            ADD COLUMN assignee text,
            ADD COLUMN resolve_note text;
        CREATE INDEX alerts_recent_idx ON alerts (rule_id, device_id, started_at DESC);
        CREATE INDEX alerts_parent_idx ON alerts (parent_alert_id) WHERE parent_alert_id IS NOT NULL;

        CREATE TABLE maintenance (
            id          bigserial PRIMARY KEY,
            device_id   text REFERENCES devices (id),
            area_id     text REFERENCES areas (id),     -- the whole subtree
            starts_at   timestamptz NOT NULL,
            ends_at     timestamptz NOT NULL,
            reason      text NOT NULL,
            created_by  text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            cancelled_at timestamptz,
            CHECK (device_id IS NOT NULL OR area_id IS NOT NULL),
            CHECK (ends_at > starts_at)
        );
        CREATE INDEX maintenance_active_idx ON maintenance (ends_at) WHERE cancelled_at IS NULL;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE maintenance;
        ALTER TABLE alerts DROP COLUMN base_severity, DROP COLUMN escalated,
            DROP COLUMN escalated_at, DROP COLUMN suppressed_by, DROP COLUMN parent_alert_id,
            DROP COLUMN last_breach_at, DROP COLUMN assignee, DROP COLUMN resolve_note;
        DROP INDEX IF EXISTS devices_parent_idx;
        DELETE FROM devices WHERE kind = 'site';
        ALTER TABLE devices DROP CONSTRAINT devices_kind_check;
        ALTER TABLE devices ADD CONSTRAINT devices_kind_check
            CHECK (kind IN ('traffic_sensor', 'camera'));
        """
    )
