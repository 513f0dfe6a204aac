"""Structured logging for every role (structlog). Never log a DSN, a password or an RTSP URL."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s:]+(:[^@\s/]*)?@", re.I)


def redact(text: str) -> str:
    """Strip user:password@ from any URL in ``text`` (RTSP, PostgreSQL, MQTT URLs)."""
    return _CREDENTIALS.sub(r"\g<scheme>***@", text)


def _redact_processor(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in event.items():
        if isinstance(value, str) and "@" in value:
            event[key] = redact(value)
    return event


def configure(level: str = "INFO", fmt: str = "console", role: str = "ioc") -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    for chatty in ("alembic", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(role=role)
