"""Structured logging for every role (structlog), and the one place where secrets are removed.

Redaction is done here, on what is about to be written, so it covers text we did not write:

- our structlog events: every key, and exceptions (``format_exc_info`` / the console
  renderer's plain traceback), redacted after rendering;
- stdlib ``logging`` records of any library (uvicorn, alembic, psycopg, paho...), whatever
  handler they go to: a log-record factory redacts the message, its arguments and the
  traceback text when the record is made;
- uncaught exceptions (``sys.excepthook``, ``threading.excepthook``) and the CLI's one-line
  error (:func:`redact`).

What is removed: credentials in URLs (``rtsp://user:pw@``, ``postgresql://``, ``mqtt://``...),
``password=...`` in libpq key/value strings and the like, and every known secret value
(Settings' passwords and keys, ``IOC_*PASSWORD*`` / ``IOC_*SECRET*`` variables), wherever it
appears. Values shorter than :data:`MIN_SECRET_LENGTH` are not searched for by value: they
would mask ordinary words (their URL form is still removed).

Not covered: bytes written straight to file descriptor 2 by C libraries (FFmpeg inside
PyAV, whose logging the camera capture keeps off): they carry no URLs today (tests/integration/test_redaction.py checks the camera path).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import structlog

MASK = "***"
MIN_SECRET_LENGTH = 6
# scheme://userinfo@ — userinfo runs to the last "@" of the authority (passwords may hold "@").
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^\s/?#\"'<>]*@", re.I)
# password=..., secret: ... in key/value text (libpq DSNs, config dumps, console-rendered logs).
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w.-]*?(?:password|passwd|pwd|secret(?:_key)?|token|private_key))"
    r"(?P<sep>\s*=\s*|\"?\s*:\s*\"?)"
    r"(?P<value>'[^']*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;&\"'}]+)",
    re.I,
)
# Settings fields / IOC_* variables whose value is a secret (by the end of their name).
_SECRET_NAMES = re.compile(r"(password|secret|secret_key|token|private_key)$", re.I)

_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secrets(values: Iterable[str | None]) -> None:
    """Known secret values to remove wherever they appear (and their quoted/escaped forms)."""
    global _secret_pattern
    with _lock:
        for value in values:
            if not value or len(value) < MIN_SECRET_LENGTH:
                continue
            for form in (value, json.dumps(value)[1:-1], repr(value)[1:-1], quote(value, "")):
                if len(form) >= MIN_SECRET_LENGTH:
                    _secrets.add(form)
        if _secrets:
            alternatives = sorted(_secrets, key=len, reverse=True)
            _secret_pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def secret_values(settings: Any) -> list[str]:
    """The secret values of a settings object: fields named like a password, secret or token,
    and the password inside a database URL."""
    values: list[str] = []
    fields = getattr(type(settings), "model_fields", {})
    for name in fields:
        value = getattr(settings, name, None)
        if isinstance(value, str) and _SECRET_NAMES.search(name):
            values.append(value)
        elif isinstance(value, str) and "://" in value:
            values.append(_url_password(value))
    return [v for v in values if v]


def _environment_secrets() -> list[str]:
    values = []
    for name, value in os.environ.items():
        if not name.startswith("IOC_") or name.endswith("_FILE"):
            continue
        if _SECRET_NAMES.search(name):
            values.append(value)
        elif "://" in value:
            values.append(_url_password(value))
    return values


def _url_password(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:
        return ""
    return unquote(password) if password else ""


def redact(text: str) -> str:
    """``text`` without URL credentials, ``password=...`` values and known secrets."""
    if _secret_pattern is not None:
        text = _secret_pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_CREDENTIALS.sub(rf"\g<scheme>{MASK}@", text)
    return _KEY_VALUE.sub(_mask_value, text)


def _mask_value(m: re.Match[str]) -> str:
    value = m.group("value")
    if value in (MASK, f"'{MASK}'", f'"{MASK}"') or value.lower() in ("none", "null", "''", '""'):
        return m.group(0)
    quote_char = value[0] if value[0] in "'\"" else ""
    return f"{m.group('key')}{m.group('sep')}{quote_char}{MASK}{quote_char}"


def _redact_any(value: Any) -> Any:
    """A logging argument: strings redacted; other objects replaced by their redacted text only
    when that text held something to remove (so %d and friends keep their numbers)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    try:
        text = str(value)
    except Exception:  # a broken __str__ must not break logging
        return value
    cleaned = redact(text)
    return value if cleaned == text else cleaned


# ------------------------------------------------------------------------ stdlib logging ---


def _redact_record(record: logging.LogRecord) -> None:
    record.msg = _redact_any(record.msg)
    if isinstance(record.args, Mapping):
        record.args = {k: _redact_any(v) for k, v in record.args.items()}
    elif isinstance(record.args, tuple):
        record.args = tuple(_redact_any(a) for a in record.args)
    if record.exc_info and not record.exc_text:
        record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip())
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _install_record_factory() -> None:
    """Every LogRecord, from any logger and for any handler, is redacted when it is made."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_ioc_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        _redact_record(record)
        return record

    factory._ioc_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class RedactingFormatter(logging.Formatter):
    """The last line of defence for stdlib handlers: the formatted text is redacted too."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _install_excepthooks() -> None:
    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        sys.stderr.write(redact(f"Exception in thread {name}:\n{text}"))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


# ----------------------------------------------------------------------------- structlog ---


def _redact_rendered(_: Any, __: str, rendered: Any) -> Any:
    """After the renderer: the whole line, exceptions included, is one string."""
    return redact(rendered) if isinstance(rendered, str) else rendered


def configure(
    level: str = "INFO", fmt: str = "console", role: str = "ioc", secrets: Iterable[str] = ()
) -> None:
    """Logging for a role. ``secrets``: known secret values (:func:`secret_values` of the
    settings); ``IOC_*`` password/secret variables of the environment are added by themselves."""
    register_secrets([*secrets, *_environment_secrets()])
    _install_record_factory()
    _install_excepthooks()
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format="%(message)s")
    for handler in logging.getLogger().handlers:
        if type(handler.formatter) in (logging.Formatter, type(None)):
            fmt_string = handler.formatter._fmt if handler.formatter else None  # noqa: SLF001
            handler.setFormatter(RedactingFormatter(fmt_string))
    for chatty in ("alembic", "alembic.runtime.plugins"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    renderers: list[Any] = (
        [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        if fmt == "json"
        else [
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            )
        ]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *renderers,
            _redact_rendered,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.bind_contextvars(role=role)
