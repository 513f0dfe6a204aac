"""The recording file: gzip-compressed JSON lines (``docs/scenarios.md``, "Recording format").

Line 1 is the header; every further line is either an MQTT message or a camera's fault state::

    {"format": "ioc-recording", "version": 1, "started_at": "2026-11-25T09:00:00.000Z",
     "broker": "127.0.0.1:51883", "topics": [...], "cameras": "http://127.0.0.1:58555"}
    {"t": 0.013, "topic": "ioc/v1/traffic/ts-00001/availability", "payload": "online",
     "qos": 1, "retain": true}
    {"t": 1.204, "topic": "ioc/v1/traffic/ts-00007/observation", "payload_b64": "//57InYi...",
     "qos": 1, "retain": false}
    {"t": 5.0, "camera": 3, "faults": ["covered"]}

``t`` is seconds since ``started_at`` (non-decreasing); ``payload`` is the text when the bytes
are UTF-8, else ``payload_b64``. A file is validated as a whole (:func:`validate`) before
anything is replayed; plain (uncompressed) JSON lines are read too.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ioc.scenario.errors import InputFileError, Problem, dotted, message
from ioc.scenario.schema import CameraFault

FORMAT = "ioc-recording"
VERSION = 1
MAX_PAYLOAD = 16 * 1024 * 1024  # far above the contract's 16 KiB: garbage is recorded as sent
MAX_PROBLEMS = 20


class Header(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["ioc-recording"]
    version: int
    started_at: datetime
    broker: str = ""
    topics: list[str] = Field(default_factory=list)
    cameras: str | None = None  # the camera simulator's control endpoint, when it answered

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != VERSION:
            raise ValueError(f"format version {v} is not supported (this ioc reads {VERSION})")
        return v

    @field_validator("started_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("started_at must carry a UTC offset")
        return v


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    t: float = Field(ge=0)

    @field_validator("t")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("t must be a finite number of seconds")
        return v


class Message(_Line):
    topic: str = Field(min_length=1, max_length=1024, pattern=r"^ioc/v1/[^#+\x00]+$")
    payload: str | None = None
    payload_b64: str | None = None
    qos: Literal[0, 1, 2] = 1
    retain: bool = False

    @model_validator(mode="after")
    def _one_payload(self) -> Message:
        if (self.payload is None) == (self.payload_b64 is None):
            raise ValueError("give exactly one of payload (UTF-8 text) and payload_b64")
        if self.payload_b64 is not None:
            try:
                raw = base64.b64decode(self.payload_b64, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("payload_b64 is not valid base64") from None
            if len(raw) > MAX_PAYLOAD:
                raise ValueError(f"payload larger than {MAX_PAYLOAD} bytes")
        elif self.payload is not None and len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload larger than {MAX_PAYLOAD} bytes")
        return self

    def body(self) -> bytes:
        if self.payload_b64 is not None:
            return base64.b64decode(self.payload_b64)
        return (self.payload or "").encode()


class CameraState(_Line):
    camera: int = Field(ge=1)
    faults: list[CameraFault]


Line = Message | CameraState


def message_line(t: float, topic: str, payload: bytes, qos: int, retain: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"t": round(t, 4), "topic": topic}
    try:
        line["payload"] = payload.decode("utf-8")
    except UnicodeDecodeError:
        line["payload_b64"] = base64.b64encode(payload).decode("ascii")
    line["qos"] = qos
    line["retain"] = retain
    return line


def dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


class Writer:
    """Writes a recording; :meth:`close` finishes the gzip stream (a killed recorder leaves a
    truncated file, which :func:`validate` reports as such)."""

    def __init__(self, path: Path, header: Header) -> None:
        self.path = path
        self._fh: IO[str] = gzip.open(path, "wt", encoding="utf-8", compresslevel=6)  # noqa: SIM115 (closed by close())
        self._fh.write(dump(header.model_dump(mode="json")))
        self.messages = 0
        self.camera_changes = 0

    def message(self, t: float, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self._fh.write(dump(message_line(t, topic, payload, qos, retain)))
        self.messages += 1

    def camera(self, t: float, camera: int, faults: list[str]) -> None:
        self._fh.write(dump({"t": round(t, 4), "camera": camera, "faults": sorted(faults)}))
        self.camera_changes += 1

    def close(self) -> None:
        self._fh.close()


def _open(path: Path) -> IO[str]:
    try:
        with path.open("rb") as fh:
            magic = fh.read(2)
    except FileNotFoundError:
        raise InputFileError(path, [Problem(0, 0, "", "no such file")]) from None
    except OSError as exc:
        raise InputFileError(path, [Problem(0, 0, "", f"cannot read ({exc.strerror})")]) from None
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", newline="\n")
    return path.open("r", encoding="utf-8", newline="\n")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text); read errors become a Problem on the line being read."""
    n = 0
    with _open(path) as fh:
        while True:
            try:
                text = fh.readline()
            except EOFError:
                raise _stop(path, n + 1, "the file ends inside a compressed block: truncated "
                            "(was `ioc record` killed before it finished?)") from None  # fmt: skip
            except (gzip.BadGzipFile, zlib.error, OSError) as exc:
                raise _stop(path, n + 1, f"not a readable gzip file ({exc})") from None
            except UnicodeDecodeError as exc:
                raise _stop(path, n + 1, f"not UTF-8 text ({exc.reason})") from None
            if not text:
                return
            n += 1
            yield n, text


class _Stop(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _stop(path: Path, line: int, reason: str) -> _Stop:
    return _Stop(Problem(line, 0, "", reason))


def _parse(n: int, text: str) -> tuple[Line | Header | None, list[Problem]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [Problem(n, exc.colno, "", f"not JSON ({exc.msg})")]
    if not isinstance(obj, dict):
        return None, [Problem(n, 1, "", "a line must be a JSON object")]
    try:
        if n == 1:
            return Header.model_validate(obj), []
        if "topic" in obj:
            return Message.model_validate(obj), []
        if "camera" in obj:
            return CameraState.model_validate(obj), []
    except ValidationError as exc:
        return None, [
            Problem(n, 0, dotted([p for p in e["loc"] if isinstance(p, str | int)]), message(e))
            for e in exc.errors(include_url=False)[:5]
        ]  # fmt: skip
    return None, [Problem(n, 1, "", "neither a message (topic) nor a camera state (camera)")]


@dataclass(frozen=True)
class Info:
    header: Header
    messages: int
    camera_states: int
    duration_s: float
    topics: dict[str, int]  # messages per kind of topic (observation, availability, control)


def _kind(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


def validate(path: Path) -> Info:
    """Read the whole file and check every line. Raises :class:`InputFileError` (each problem
    with its line, at most 20) when anything is wrong."""
    problems: list[Problem] = []
    header: Header | None = None
    messages = cameras = 0
    last_t = 0.0
    kinds: dict[str, int] = {}
    try:
        for n, text in _lines(path):
            if not text.strip():
                problems.append(Problem(n, 1, "", "empty line"))
                continue
            parsed, found = _parse(n, text)
            problems += found
            if isinstance(parsed, Header):
                header = parsed
            elif parsed is not None:
                if parsed.t < last_t:
                    problems.append(
                        Problem(n, 0, "t", f"goes back in time ({parsed.t} < {last_t})")
                    )
                last_t = max(last_t, parsed.t)
                if isinstance(parsed, Message):
                    messages += 1
                    kinds[_kind(parsed.topic)] = kinds.get(_kind(parsed.topic), 0) + 1
                else:
                    cameras += 1
            if len(problems) >= MAX_PROBLEMS:
                break
    except _Stop as stop:
        problems.append(stop.problem)
    except UnicodeDecodeError as exc:
        problems.append(Problem(0, 0, "", f"not UTF-8 text ({exc.reason})"))
    if header is None and not any(p.line == 1 for p in problems):
        problems.insert(0, Problem(1, 0, "", f"missing the header line ({FORMAT} format)"))
    if problems or header is None:
        raise InputFileError(path, problems[:MAX_PROBLEMS])
    return Info(header, messages, cameras, last_t, kinds)


def read(path: Path) -> Iterator[Line]:
    """Every line after the header, in file order. Validate first: this does not check."""
    for n, text in _lines(path):
        if n == 1:
            continue
        obj = json.loads(text)
        yield Message.model_validate(obj) if "topic" in obj else CameraState.model_validate(obj)
