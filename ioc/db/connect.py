"""Opening connections, with errors that say which command fixes them."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from ioc.db import migrate


class DatabaseUnavailable(RuntimeError):
    pass


def describe(exc: BaseException) -> str:
    """One line about a connection failure, without the DSN (it carries the password)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


async def connect(dsn: str, *, autocommit: bool = False) -> psycopg.AsyncConnection[dict[str, Any]]:
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=autocommit, row_factory=dict_row, connect_timeout=5
        )
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL ({describe(exc)}); start it with `ioc services up` "
            "or check IOC_DATABASE_URL / IOC_PG_PORT"
        ) from None


def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 8) -> AsyncConnectionPool:
    """An unopened pool; the owner opens it (``await pool.open()``) and closes it."""
    return AsyncConnectionPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        open=False,
        kwargs={"row_factory": dict_row, "connect_timeout": 5},
        name="ioc",
    )


def require_schema(sqlalchemy_url: str) -> None:
    """Refuse to run a role against a database whose migrations are behind the code."""
    try:
        current, head = migrate.pending(sqlalchemy_url)
    except Exception as exc:  # sqlalchemy wraps psycopg errors
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL ({describe(exc.__cause__ or exc)}); "
            "start it with `ioc services up` or check IOC_DATABASE_URL / IOC_PG_PORT"
        ) from None
    if current != head:
        raise DatabaseUnavailable(
            f"database schema is at {current or 'nothing'}, code needs {head}: run `ioc migrate`"
        )
