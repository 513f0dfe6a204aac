import json
from datetime import UTC, datetime, timedelta

import pytest

from ioc.domain import wire
from ioc.domain.wire import Reason, Rejected, TrafficObservation, parse_observation

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
TOPIC = "ioc/v1/traffic/ts-00001/observation"


def payload(**over: object) -> bytes:
    body = {
        "v": 1,
        "device_id": "ts-00001",
        "seq": 7,
        "observed_at": "2026-11-25T16:00:00+07:00",
        "intensity": 12,
        "average_speed": 42.5,
        "occupancy": 0.2,
        "interval_s": 2,
    }
    body.update(over)
    return TrafficObservation.model_validate(body).to_payload() if not over else _dump(body)


def _dump(body: dict[str, object]) -> bytes:
    import json

    return json.dumps(body).encode()


def test_valid_observation_is_normalised_to_utc() -> None:
    obs = parse_observation(TOPIC, payload(), now=NOW)
    assert isinstance(obs, TrafficObservation)
    assert obs.observed_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    assert obs.seq == 7


def test_round_trip_through_the_wire() -> None:
    obs = parse_observation(TOPIC, payload(), now=NOW)
    assert isinstance(obs, TrafficObservation)
    again = parse_observation(TOPIC, obs.to_payload(), now=NOW)
    assert again == obs


@pytest.mark.parametrize(
    ("topic", "raw", "reason"),
    [
        (TOPIC, b"{not json", Reason.BAD_JSON),
        (TOPIC, b"\xff\xfe", Reason.BAD_JSON),
        (TOPIC, b"[1, 2]", Reason.BAD_JSON),
        (TOPIC, _dump({"v": 2, "device_id": "ts-00001"}), Reason.UNSUPPORTED_VERSION),
        (TOPIC, _dump({"device_id": "ts-00001"}), Reason.UNSUPPORTED_VERSION),
        (TOPIC, _dump({"v": True, "device_id": "ts-00001"}), Reason.UNSUPPORTED_VERSION),
        (TOPIC, _dump({"v": 1.0, "device_id": "ts-00001"}), Reason.UNSUPPORTED_VERSION),
        (TOPIC, payload(average_speed=-3), Reason.OUT_OF_RANGE),
        (TOPIC, payload(occupancy=1.5), Reason.OUT_OF_RANGE),
        (TOPIC, payload(intensity=-1), Reason.OUT_OF_RANGE),
        (TOPIC, payload(average_speed="fast"), Reason.SCHEMA),
        (TOPIC, payload(observed_at="2026-11-01T00:00:00Z"), Reason.CLOCK_SKEW),
        (TOPIC, payload(extra_field=1), Reason.SCHEMA),
        (TOPIC, payload(observed_at="2026-11-25T09:00:00"), Reason.SCHEMA),
        (TOPIC, payload(device_id="ts-00002"), Reason.TOPIC_MISMATCH),
        ("ioc/v1/traffic/ts-00001/other", payload(), Reason.BAD_TOPIC),
        (TOPIC, payload(observed_at="2026-11-25T10:00:00Z"), Reason.CLOCK_SKEW),
        (TOPIC, b" " * (wire.MAX_PAYLOAD_BYTES + 1), Reason.TOO_LARGE),
    ],
)
def test_bad_input_gets_a_reason(topic: str, raw: bytes, reason: Reason) -> None:
    result = parse_observation(topic, raw, now=NOW)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert result.detail


def test_small_clock_skew_is_accepted() -> None:
    ahead = (NOW + timedelta(minutes=4)).isoformat()
    assert isinstance(
        parse_observation(TOPIC, payload(observed_at=ahead), now=NOW), TrafficObservation
    )


def test_topics() -> None:
    assert wire.observation_topic("ts-1") == "ioc/v1/traffic/ts-1/observation"
    assert wire.device_id_from_topic("ioc/v1/traffic/ts-1/observation") == "ts-1"
    assert wire.device_id_from_topic("ioc/v1/traffic//observation") is None
    assert (
        wire.shared_subscription("g", wire.TRAFFIC_OBSERVATION_FILTER)
        == "$share/g/ioc/v1/traffic/+/observation"
    )


def test_values_are_normalised_to_storable_precision() -> None:
    obs = parse_observation(
        TOPIC, payload(average_speed=1.0236322646793322e-95, occupancy=0.123456), now=NOW
    )
    assert isinstance(obs, TrafficObservation)
    assert obs.average_speed == 0.0 and obs.occupancy == 0.1235


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_complete_payload_with_a_look_alike_version_is_refused(version: object) -> None:
    body = json.loads(payload())
    body["v"] = version
    result = parse_observation(TOPIC, json.dumps(body).encode(), now=NOW)
    assert isinstance(result, Rejected) and result.reason is Reason.UNSUPPORTED_VERSION
