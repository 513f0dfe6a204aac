"""Request-scoped dependencies: a pooled connection per request, passed explicitly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request


async def _connection(request: Request) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[psycopg.AsyncConnection[Any], Depends(_connection)]
