"""The recording file: written, validated as a whole (errors with their line), read back; and
the timestamp shift of a replay."""

from __future__ import annotations

import base64
import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ioc.scenario.errors import InputFileError
from ioc.scenario.recording import CameraState, Header, Message, Writer, read, validate
from ioc.scenario.replay import shift_observed_at

STARTED = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
HEADER = {"format": "ioc-recording", "version": 1, "started_at": "2026-11-25T02:00:00Z"}
OBS = "ioc/v1/traffic/ts-00001/observation"


def header() -> Header:
    return Header(format="ioc-recording", version=1, started_at=STARTED, broker="127.0.0.1:1")


def write_lines(path: Path, lines: list[object], *, compress: bool = True) -> Path:
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines)
    if compress:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(InputFileError) as err:
        validate(path)
    return [p.render(path) for p in err.value.problems]


def test_written_recordings_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    w = Writer(path, header())
    w.message(0.01, "ioc/v1/traffic/ts-00001/availability", b"online", 1, True)
    w.message(0.5, OBS, b'{"v":1}', 1, False)
    w.message(0.75, OBS, b"\xff\xfe garbage", 1, False)
    w.camera(1.0, 3, ["covered", "black"])
    w.close()
    info = validate(path)
    assert (info.messages, info.camera_states, info.duration_s) == (3, 1, 1.0)
    assert info.topics == {"availability": 1, "observation": 2}
    assert info.header.started_at == STARTED
    lines = list(read(path))
    assert isinstance(lines[0], Message) and lines[0].retain and lines[0].body() == b"online"
    assert isinstance(lines[2], Message) and lines[2].payload_b64 is not None
    assert lines[2].body() == b"\xff\xfe garbage"
    assert lines[3] == CameraState(t=1.0, camera=3, faults=["black", "covered"])
    raw = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert json.loads(raw[2]) == {"t": 0.5, "topic": OBS, "payload": '{"v":1}', "qos": 1,
                                  "retain": False}  # fmt: skip


def test_plain_json_lines_are_read_too(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "r.jsonl", [HEADER, {"t": 0, "topic": OBS, "payload": "x"}],
                       compress=False)  # fmt: skip
    assert validate(path).messages == 1


def test_every_bad_line_is_named(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.gz",
        [
            HEADER,
            {"t": 1, "topic": OBS, "payload": "ok"},
            "{not json",
            {"t": 2, "topic": OBS, "payload_b64": "***"},
            {"t": 0.5, "topic": OBS, "payload": "back in time"},
            {"t": 3, "topic": "ioc/v1/traffic/+/observation", "payload": "x"},
            {"t": 4, "camera": 2, "faults": ["on fire"]},
            {"t": 5, "what": 1},
            [1, 2],
            {"t": 6, "topic": OBS, "payload": "x", "extra": 1},
        ],
    )
    lines = problems(path)
    assert lines[0].startswith(f"{path}:3:2: not JSON")
    assert lines[1] == f"{path}:4: payload_b64 is not valid base64"
    assert lines[2] == f"{path}:5: t: goes back in time (0.5 < 1.0)"
    assert lines[3].startswith(f"{path}:6: topic:")
    assert lines[4].startswith(f"{path}:7: faults[0]:")
    assert lines[5] == f"{path}:8:1: neither a message (topic) nor a camera state (camera)"
    assert lines[6] == f"{path}:9:1: a line must be a JSON object"
    assert lines[7] == f"{path}:10: extra: unknown field (a typo?)"


def test_the_header_is_required_and_versioned(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "h.gz", [{"t": 0, "topic": OBS, "payload": "x"}])
    assert problems(path)[0].startswith(f"{path}:1: format: Field required")
    path = write_lines(tmp_path / "v.gz", [HEADER | {"version": 2}])
    assert problems(path) == [
        f"{path}:1: version: format version 2 is not supported (this ioc reads 1)"
    ]
    empty = tmp_path / "e.gz"
    empty.write_bytes(gzip.compress(b""))
    assert problems(empty) == [f"{empty}:1: missing the header line (ioc-recording format)"]


def test_a_truncated_recording_says_so(tmp_path: Path) -> None:
    path = tmp_path / "t.gz"
    full = gzip.compress(
        "".join(json.dumps(x) + "\n" for x in [HEADER] + [
            {"t": i, "topic": OBS, "payload": "x" * 200} for i in range(200)
        ]).encode()
    )  # fmt: skip
    path.write_bytes(full[: len(full) // 2])
    (line,) = problems(path)
    assert "truncated" in line and line.startswith(f"{path}:")


def test_not_gzip_nor_text(tmp_path: Path) -> None:
    path = tmp_path / "b.bin"
    path.write_bytes(b"\x1f\x8b\x08garbage-after-the-magic")
    assert "truncated" in problems(path)[0]
    missing = tmp_path / "none.gz"
    assert problems(missing) == [f"{missing}:0: no such file"]


def test_shift_keeps_offset_style_and_leaves_garbage_alone() -> None:
    delta = timedelta(hours=1, milliseconds=500)
    z = b'{"v":1,"observed_at":"2026-11-25T02:00:00.000Z","seq":3}'
    assert json.loads(shift_observed_at(z, delta)) == {
        "v": 1, "observed_at": "2026-11-25T03:00:00.500Z", "seq": 3,
    }  # fmt: skip
    local = b'{"observed_at":"2026-11-25T09:00:00.250+07:00"}'
    assert json.loads(shift_observed_at(local, delta))["observed_at"] == (
        "2026-11-25T10:00:00.750+07:00"
    )
    for junk in (b"\xff\xfe", b"[1,2]", b'{"observed_at": 5}', b'{"observed_at":"09:00"}', b"{"):
        assert shift_observed_at(junk, delta) == junk
    naive = b'{"observed_at":"2026-11-25T09:00:00"}'
    assert shift_observed_at(naive, delta) == naive


def test_message_payload_rules() -> None:
    with pytest.raises(ValueError):
        Message(t=0, topic=OBS)
    with pytest.raises(ValueError):
        Message(t=0, topic=OBS, payload="a", payload_b64=base64.b64encode(b"a").decode())
    with pytest.raises(ValueError):
        Message(t=float("inf"), topic=OBS, payload="a")
