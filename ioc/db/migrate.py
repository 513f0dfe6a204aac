"""Run the hand-written Alembic migrations programmatically (``ioc migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config(sqlalchemy_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    return cfg


def upgrade(sqlalchemy_url: str, revision: str = "head") -> None:
    command.upgrade(_config(sqlalchemy_url), revision)


def pending(sqlalchemy_url: str) -> tuple[str | None, str | None]:
    """(current, head): the API and workers refuse to start when they differ."""
    head = ScriptDirectory.from_config(_config(sqlalchemy_url)).get_current_head()
    engine = create_engine(sqlalchemy_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    return current, head
