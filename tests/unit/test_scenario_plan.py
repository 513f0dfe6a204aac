"""From a scenario's timeline to the commands the runner sends (pure: no broker, no database)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ioc.domain import wire
from ioc.scenario.centre import CentreError, merge_specs
from ioc.scenario.plan import (
    CameraAction,
    Device,
    MqttAction,
    PlanError,
    World,
    plan,
    undo,
)
from ioc.scenario.schema import CentreSpec, Scenario


def world() -> World:
    parents = {"p": None, "a": "p", "b": "p", "a1": "a", "a2": "a"}
    devices = [
        Device("s1", "traffic_sensor", "a1", "site-a1", road="QL14"),
        Device("s2", "traffic_sensor", "a1", "site-a1", road="QL13"),
        Device("s3", "traffic_sensor", "a2", "site-a2", road="QL14"),
        Device("s4", "traffic_sensor", "b", "site-b", road="QL14"),
        Device("c1", "camera", "a1", "site-a1", camera=1),
        Device("c2", "camera", "b", "site-b", camera=2),
        Device("site-a1", "site", "a1"),
    ]
    return World(parents=parents, devices={d.id: d for d in devices})


def scenario(*steps: dict[str, Any]) -> Scenario:
    return Scenario.model_validate(
        {
            "version": 1,
            "name": "t",
            "title": "t",
            "timeline": list(steps),
            "expect": [{"no_alert": "any"}],
        }
    )


def payload(a: Any) -> dict[str, Any]:
    assert isinstance(a, MqttAction)
    assert a.topic == wire.SIM_CONTROL and a.qos == 1 and not a.retain
    return dict(json.loads(a.payload))


def test_world_subtrees_and_leaves() -> None:
    w = world()
    assert w.subtree("a") == {"a", "a1", "a2"}
    assert w.is_leaf("a1") and not w.is_leaf("a")
    assert w.in_areas(["a"], "traffic_sensor") == ["s1", "s2", "s3"]
    assert w.camera_device(2) == "c2" and w.camera_device(9) is None


def test_a_leaf_area_is_named_a_parent_area_or_a_road_is_listed() -> None:
    w = world()
    (leaf,) = plan(scenario({"at": 0, "do": "congestion", "area": "a1"}), w)
    assert payload(leaf)["area_id"] == "a1" and payload(leaf)["device_ids"] is None
    (parent,) = plan(scenario({"at": 0, "do": "congestion", "area": "a"}), w)
    assert payload(parent)["area_id"] is None
    assert payload(parent)["device_ids"] == ["s1", "s2", "s3"]
    (road,) = plan(scenario({"at": 0, "do": "congestion", "area": "a", "road": "QL14"}), w)
    assert payload(road)["device_ids"] == ["s1", "s3"]
    assert payload(road)["action"] == "congestion" and payload(road)["speed_kmh"] == 8.0
    assert "a along QL14" in road.label


def test_faults_and_clears_are_the_wire_commands() -> None:
    w = world()
    fault, clear = plan(
        scenario(
            {"at": 1, "do": "sensor_fault", "kind": "silent", "device": "s4", "duration_s": 9},
            {"at": 2, "do": "clear_faults"},
        ),
        w,
    )
    cmd = wire.SimFault.model_validate(payload(fault))
    assert (cmd.action, cmd.kind, cmd.device_ids, cmd.duration_s) == ("fault", "silent", ["s4"], 9)
    assert payload(clear) == wire.SimFault(action="clear_faults").model_dump()


def test_network_down_drops_sensors_and_hangs_cameras_until_network_up() -> None:
    w = world()
    actions = plan(
        scenario(
            {"at": 2, "do": "network_down", "area": "a1"},
            {"at": 9, "do": "network_up", "area": "a1"},
        ),
        w,
    )
    assert [(a.at, type(a).__name__) for a in actions] == [
        (2, "MqttAction"), (2, "CameraAction"), (9, "MqttAction"), (9, "CameraAction"),
    ]  # fmt: skip
    down = wire.SimFault.model_validate(payload(actions[0]))
    assert (down.kind, down.area_id, down.duration_s) == ("store_and_forward", "a1", 86_400)
    assert actions[1] == CameraAction(2, 0, "camera 1: link down", "fault", 1, "hang", True)
    assert payload(actions[2])["action"] == "clear_faults"
    assert isinstance(actions[3], CameraAction) and actions[3].on is False


def test_network_down_with_a_duration_brings_cameras_back_itself() -> None:
    actions = plan(
        scenario({"at": 0, "do": "network_down", "areas": ["a", "b"], "duration_s": 5}), world()
    )
    sensors = payload(actions[0])
    assert sensors["area_id"] is None and sensors["device_ids"] == ["s1", "s2", "s3", "s4"]
    cams = [(a.at, a.camera, a.on) for a in actions if isinstance(a, CameraAction)]
    assert sorted(cams) == [(0, 1, True), (0, 2, True), (5, 1, False), (5, 2, False)]


def test_flap_and_repeat_spread_over_time() -> None:
    flaps = plan(
        scenario({"at": 1, "do": "flap", "device": "s1", "down_s": 2, "up_s": 3, "cycles": 3}),
        world(),
    )
    assert [a.at for a in flaps] == [1, 6, 11]
    assert all(payload(a)["kind"] == "store_and_forward" for a in flaps)
    assert all(payload(a)["duration_s"] == 2 for a in flaps)
    repeated = plan(
        scenario({"at": 0, "do": "camera_fault", "camera": 2, "fault": "black", "repeat": 3,
                  "every_s": 10}),
        world(),
    )  # fmt: skip
    assert [a.at for a in repeated] == [0, 10, 20]


def test_publish_payloads() -> None:
    raw, js, big = plan(
        scenario(
            {"at": 0, "do": "publish", "topic": "ioc/v1/traffic/s1/observation",
             "payload_b64": base64.b64encode(b"\xff\x00").decode()},
            {"at": 1, "do": "publish", "topic": "ioc/v1/traffic/s1/observation",
             "payload_json": {"v": 2}},
            {"at": 2, "do": "publish", "topic": "ioc/v1/traffic/s1/observation",
             "payload": "ab", "repeat_bytes": 3, "qos": 0, "retain": True},
        ),
        world(),
    )  # fmt: skip
    assert isinstance(raw, MqttAction) and raw.payload == b"\xff\x00"
    assert isinstance(js, MqttAction) and json.loads(js.payload) == {"v": 2}
    assert isinstance(big, MqttAction) and big.payload == b"ababab"
    assert (big.qos, big.retain) == (0, True)


def test_what_the_centre_does_not_have_is_a_plan_error() -> None:
    w = world()
    with pytest.raises(PlanError) as err:
        plan(scenario({"at": 0, "do": "congestion", "devices": ["s1", "nope"]}), w)
    assert err.value.loc == ("timeline", 0, "devices", 1)
    with pytest.raises(PlanError) as err:
        plan(scenario({"at": 0, "do": "congestion", "device": "c1"}), w)
    assert "not a registered traffic sensor" in err.value.reason
    with pytest.raises(PlanError) as err:
        plan(scenario({"at": 0, "do": "congestion", "area": "b", "road": "QL13"}), w)
    assert err.value.reason == "no traffic sensors in b along QL13"
    with pytest.raises(PlanError) as err:
        plan(scenario({"at": 0, "do": "network_down", "area": "zz"}), w)
    assert err.value.loc == ("timeline", 0, "area")


def test_undo_ends_what_the_scenario_started() -> None:
    actions = plan(
        scenario(
            {"at": 0, "do": "congestion", "area": "b"},
            {"at": 0, "do": "sensor_fault", "kind": "stuck", "devices": ["s1", "s2"]},
            {"at": 0, "do": "camera_fault", "cameras": [1, 2], "fault": "covered"},
            {"at": 1, "do": "camera_clear", "camera": 2, "fault": "covered"},
            {"at": 1, "do": "camera_fault", "camera": 1, "fault": "frozen"},
            {"at": 2, "do": "camera_clear", "camera": 1},
            {"at": 3, "do": "camera_fault", "camera": 2, "fault": "black"},
        ),
        world(),
    )
    ends = undo(actions)
    sim = [payload(a) for a in ends if isinstance(a, MqttAction)]
    assert sim == [
        wire.SimControl(action="clear", area_id="b").model_dump(),
        wire.SimFault(action="clear_faults", device_ids=["s1", "s2"]).model_dump(),
    ]
    cams = [(a.camera, a.fault, a.on) for a in ends if isinstance(a, CameraAction)]
    assert cams == [(2, "black", False)]


def test_scenarios_run_together_share_one_centre() -> None:
    a = CentreSpec(cameras=2, rules={"device.silent": {"for_s": 5}})
    b = CentreSpec(camera_day_s=3600, rules={"site.down": {"clear": 0.0}})
    merged = merge_specs([("a", a), ("b", b)])
    assert (merged.cameras, merged.camera_day_s) == (2, 3600)
    assert merged.rules == {"device.silent": {"for_s": 5}, "site.down": {"clear": 0.0}}
    with pytest.raises(CentreError, match="b sets device.silent.for_s = 9, a sets 5"):
        merge_specs([("a", a), ("b", CentreSpec(rules={"device.silent": {"for_s": 9}}))])
    with pytest.raises(CentreError, match="run them apart"):
        merge_specs([("a", a), ("b", CentreSpec(sensors=300))])
