"""What a websocket client may send, and the server's replies to it: plain functions on text,
no I/O (the endpoint in ``ioc/api/ws.py`` reads and writes the socket). Protocol:
docs/websocket.md, "Client messages".

A bad message is answered with an error naming a reason code, and the connection stays: one
malformed frame from a buggy client must not end a live stream (the endpoint closes only after
many bad messages in a row).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

MAX_MESSAGE_CHARS = 4096  # a ping is a few dozen characters
MAX_DEPTH = 32  # nesting of arrays and objects (an echo is echoed: keep it shallow)


class Code(StrEnum):
    BAD_JSON = "bad_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_TYPE = "unknown_type"
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class Ping:
    """``{"type": "ping", "echo": <any JSON value>}``; the echo (default null) comes back in the
    pong, so a client can match answers to pings or measure the round trip."""

    echo: Any = None


ClientMessage: TypeAlias = Ping  # the only client message so far; new ones join this union


@dataclass(frozen=True, slots=True)
class ProtocolError:
    code: Code
    message: str  # what the client should do instead


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400: Python reads it as inf, which JSON cannot carry back
        raise ValueError(f"{text} is out of range")
    return value


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest deeper than MAX_DEPTH (walked without recursion)."""
    todo = [(value, 1)]
    while todo:
        v, depth = todo.pop()
        if isinstance(v, dict | list):
            if depth > MAX_DEPTH:
                return True
            todo.extend((x, depth + 1) for x in (v.values() if isinstance(v, dict) else v))
    return False


def parse_client_message(text: str) -> ClientMessage | ProtocolError:
    """One text frame from a client: the message, or why it is not one. Never raises."""
    if len(text) > MAX_MESSAGE_CHARS:
        return ProtocolError(
            Code.TOO_LARGE, f"a client message is at most {MAX_MESSAGE_CHARS} characters"
        )
    too_deep = ProtocolError(Code.TOO_LARGE, f"a message nests at most {MAX_DEPTH} levels deep")
    try:
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError:  # JSONDecodeError is one
        return ProtocolError(Code.BAD_JSON, 'not JSON: send one JSON object, e.g. {"type": "ping"}')
    except RecursionError:  # "[[[[...]]]]": the parser itself gave up
        return too_deep
    if not isinstance(value, dict):
        return ProtocolError(
            Code.NOT_AN_OBJECT, 'a message is a JSON object with a "type", e.g. {"type": "ping"}'
        )
    if _too_deep(value):
        return too_deep
    kind = value.get("type")
    if kind == "ping":
        return Ping(echo=value.get("echo"))
    shown = json.dumps(kind)[:40]
    return ProtocolError(Code.UNKNOWN_TYPE, f'unknown type {shown}: the server understands "ping"')


def pong(ping: Ping) -> str:
    """The answer to a ping (ASCII-only JSON: any echoed text survives the trip)."""
    return json.dumps({"type": "pong", "echo": ping.echo}, allow_nan=False)


def error(err: ProtocolError) -> str:
    """The answer to a bad message."""
    return json.dumps({"type": "error", "code": err.code.value, "message": err.message})
