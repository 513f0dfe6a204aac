"""Sign-in: users with a role and an area, their sessions, and the append-only audit log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE TABLE users (
    id                  bigserial PRIMARY KEY,
    username            text NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,63}$'),
    display_name        text NOT NULL DEFAULT '',
    role                text NOT NULL CHECK (role IN ('admin', 'supervisor', 'operator', 'leader')),
    area_id             text NOT NULL REFERENCES areas (id),   -- sees and acts on this subtree
    password_hash       text NOT NULL,                         -- Argon2id (argon2-cffi)
    disabled            boolean NOT NULL DEFAULT false,
    failed_logins       integer NOT NULL DEFAULT 0,            -- consecutive, reset on success
    locked_until        timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- One row per sign-in. The refresh token is stored only as a SHA-256 digest; the access
-- tokens (JWT) name the session, so revoking the row ends both at once.
CREATE TABLE auth_sessions (
    id            uuid PRIMARY KEY,
    user_id       bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz NOT NULL DEFAULT now(),
    idle_until    timestamptz NOT NULL,      -- moved on by each refresh
    expires_at    timestamptz NOT NULL,      -- absolute end, never moved
    revoked_at    timestamptz,
    revoked_why   text,
    ip            inet,
    user_agent    text
);
CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id) WHERE revoked_at IS NULL;

-- Who did what, when, from where. Written in the same transaction as the change it records.
CREATE TABLE audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,                   -- a username, 'cli:<os user>' or 'anonymous'
    action  text NOT NULL,                   -- e.g. auth.sign_in, alert.acknowledge, user.add
    target  text,
    ip      inet,
    detail  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_action_idx ON audit_log (action, at DESC);
CREATE INDEX audit_log_ip_idx ON audit_log (ip, at DESC) WHERE action = 'auth.sign_in_failed';
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at DESC);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
-- Camera pictures show people: every view is counted, per user, camera and 10 minutes
-- (a wall refreshes pictures every few seconds; one row per refresh would drown the log).
CREATE TABLE picture_views (
    bucket     timestamptz NOT NULL,
    username   text NOT NULL,
    device_id  text NOT NULL,
    ip         inet,
    first_at   timestamptz NOT NULL DEFAULT now(),
    last_at    timestamptz NOT NULL DEFAULT now(),
    views      integer NOT NULL DEFAULT 1,
    PRIMARY KEY (bucket, username, device_id)
);
CREATE INDEX picture_views_device_idx ON picture_views (device_id, bucket DESC);
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
"""

DOWNGRADE = """
DROP TABLE IF EXISTS picture_views, audit_log, auth_sessions, users;
DROP FUNCTION IF EXISTS audit_log_append_only();
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
