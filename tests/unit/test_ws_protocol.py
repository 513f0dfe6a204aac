"""The websocket client-message parser (streams/protocol.py): whatever a client sends, the parser
returns a message or a reason code, never raises, and every reply it makes is valid JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streams.protocol import (
    MAX_DEPTH,
    MAX_MESSAGE_CHARS,
    Code,
    Ping,
    ProtocolError,
    error,
    parse_client_message,
    pong,
)

# Any JSON value (finite numbers: JSON has no NaN or Infinity).
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def depth(value: Any) -> int:
    if isinstance(value, dict):
        value = list(value.values())
    return 1 + max(map(depth, value), default=0) if isinstance(value, list) else 0


def reply(got: Ping | ProtocolError) -> dict[str, Any]:
    """The server's answer, as a client decodes it: must be one JSON object."""
    text = pong(got) if isinstance(got, Ping) else error(got)
    text.encode("ascii")  # ASCII-only: no lone surrogate can break the frame's UTF-8
    decoded = json.loads(text)
    assert isinstance(decoded, dict)
    return decoded


@settings(max_examples=300)
@given(st.text(max_size=300))
@example("")
@example("NaN")
@example('{"type": "ping", "echo": 1e400}')
@example("[" * 5000 + "]" * 5000)
@example('"\\ud800"')
def test_any_text_is_a_message_or_a_reason(text: str) -> None:
    got = parse_client_message(text)
    assert isinstance(got, Ping | ProtocolError)
    answer = reply(got)
    assert answer["type"] == ("pong" if isinstance(got, Ping) else "error")
    if isinstance(got, ProtocolError):
        assert answer["code"] in set(Code) and answer["message"]


@settings(max_examples=300)
@given(json_values)
def test_any_json_value_is_a_message_or_a_reason(value: Any) -> None:
    got = parse_client_message(json.dumps(value))
    assert isinstance(got, Ping | ProtocolError)
    if not isinstance(value, dict):
        assert isinstance(got, ProtocolError)
        assert got.code in (Code.NOT_AN_OBJECT, Code.TOO_LARGE)
    reply(got)


@settings(max_examples=300)
@given(
    echo=json_values,
    extra=st.dictionaries(st.text().filter(lambda k: k not in ("type", "echo")), json_values),
    ascii_only=st.booleans(),
)
def test_ping_echo_comes_back_unchanged(echo: Any, extra: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps({**extra, "type": "ping", "echo": echo}, ensure_ascii=ascii_only)
    got = parse_client_message(text)
    if isinstance(got, ProtocolError):  # only a long or deep ping is refused
        assert got.code is Code.TOO_LARGE
        assert len(text) > MAX_MESSAGE_CHARS or depth(echo) >= MAX_DEPTH
        return
    assert got == Ping(echo=echo)
    assert reply(got) == {"type": "pong", "echo": echo}


@given(st.dictionaries(st.text(), json_values).filter(lambda d: d.get("type") != "ping"))
def test_an_object_that_is_not_a_ping_is_an_unknown_type(value: dict[str, Any]) -> None:
    got = parse_client_message(json.dumps(value))
    assert isinstance(got, ProtocolError)
    assert got.code in (Code.UNKNOWN_TYPE, Code.TOO_LARGE)


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("{", Code.BAD_JSON),
        ("ping", Code.BAD_JSON),
        ('{"type": "ping", "echo": NaN}', Code.BAD_JSON),
        ('{"type": "ping", "echo": -Infinity}', Code.BAD_JSON),
        ('{"type": "ping", "echo": 1e400}', Code.BAD_JSON),
        ("[]", Code.NOT_AN_OBJECT),
        ('"ping"', Code.NOT_AN_OBJECT),
        ("null", Code.NOT_AN_OBJECT),
        ("{}", Code.UNKNOWN_TYPE),
        ('{"type": "PING"}', Code.UNKNOWN_TYPE),
        ('{"type": ["ping"]}', Code.UNKNOWN_TYPE),
        ('{"type": "ping", "echo": "' + "x" * MAX_MESSAGE_CHARS + '"}', Code.TOO_LARGE),
        ('{"type": "ping", "echo": ' + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "}", Code.TOO_LARGE),
        ("[" * 3000 + "]" * 3000, Code.TOO_LARGE),
        ("[" * 2000 + "]" * 2000, Code.TOO_LARGE),  # short enough, but the parser gives up
    ],
)
def test_reason_codes(text: str, code: Code) -> None:
    got = parse_client_message(text)
    assert isinstance(got, ProtocolError) and got.code is code, got
    assert reply(got) == {"type": "error", "code": code.value, "message": got.message}


def test_a_ping_without_echo_gets_null_and_unknown_keys_are_ignored() -> None:
    assert parse_client_message('{"type": "ping"}') == Ping(echo=None)
    got = parse_client_message('{"type": "ping", "echo": {"n": 7}, "v": 2}')
    assert reply(got) == {"type": "pong", "echo": {"n": 7}}
    deep = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # the object itself is one level
    assert parse_client_message('{"type": "ping", "echo": ' + deep + "}") == Ping(
        echo=json.loads(deep)
    )
