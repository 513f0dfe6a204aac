"""docker-compose.yml cannot run here (no Docker engine), so it is checked by reading: the
images, the roles against the real CLI parser, scaling, secrets, start-up order and the broker
config it mounts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ioc import mqtt_logins
from ioc.cli import ROLES, build_parser
from ioc.config import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
LONG_RUNNING = ("api", "ingest-mqtt", "ingest-rtsp", "alerts", "simulator")
# ${VAR:?message}: compose refuses to start when VAR is unset or empty.
REQUIRED_VAR = re.compile(r"^\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}$")


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    doc: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, dict[str, Any]] = doc["services"]
    return services


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_official_images(services: dict[str, dict[str, Any]]) -> None:
    db = services["db"]["image"]
    assert db.startswith("timescale/timescaledb:") and db.endswith("-pg15"), db
    assert services["mqtt"]["image"].startswith("eclipse-mosquitto:")
    assert services["rtsp"]["image"].startswith("bluenviron/mediamtx")
    assert services["rtsp"].get("profiles") == ["sim"]


def test_required_roles_exist(services: dict[str, dict[str, Any]]) -> None:
    apps = app_services(services)
    for name in ("migrate", "api", "ingest-mqtt", "ingest-rtsp", "alerts", "seed", "simulator"):
        assert name in apps, f"no app service {name!r}"
    assert apps["ingest-mqtt"]["command"] == ["ingest", "mqtt"]
    assert apps["ingest-rtsp"]["command"] == ["ingest", "rtsp"]
    for name in ("seed", "simulator"):
        assert apps[name].get("profiles") == ["sim"], name


@pytest.mark.parametrize(
    "name", ["migrate", "api", "ingest-mqtt", "ingest-rtsp", "alerts", "seed", "simulator"]
)
def test_command_is_a_real_role(services: dict[str, dict[str, Any]], name: str) -> None:
    svc = services[name]
    assert svc["build"] == ".", "every role runs the image built from the Dockerfile"
    command = svc["command"]
    assert isinstance(command, list) and all(isinstance(a, str) for a in command)
    try:
        build_parser().parse_args(command)
    except SystemExit:
        pytest.fail(f"{name}: `ioc {' '.join(command)}` is not a command the CLI accepts")
    assert " ".join(command) in ROLES, f"{name}: {command} is not one of ioc.cli.ROLES"


def test_every_built_service_is_checked(services: dict[str, dict[str, Any]]) -> None:
    """A new app service must pass the role check above too (options after the role)."""
    for name, svc in app_services(services).items():
        build_parser().parse_args(svc["command"])  # raises SystemExit when wrong
        words = [w for w in svc["command"] if not w.startswith("-")]
        role = " ".join(words[: len(svc["command"][0].split()) + 1])
        assert " ".join(svc["command"]) in ROLES or role in ROLES, name


def test_only_api_is_published(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in app_services(services).items():
        assert "container_name" not in svc, f"{name}: container_name prevents --scale"
        if name != "api":
            assert not svc.get("ports"), f"{name}: host ports clash between replicas"
    assert any(str(p).endswith(":8000") for p in services["api"]["ports"])


def test_ingest_replicas_get_distinct_identities(services: dict[str, dict[str, Any]]) -> None:
    """--scale copies one definition: anything fixed would be shared by every replica, and a
    shared MQTT client id makes replicas steal each other's session (a shared camera worker id,
    each other's camera leases)."""
    ingest = services["ingest-mqtt"]
    assert "hostname" not in ingest
    assert "IOC_MQTT_CLIENT_ID" not in environment(ingest)
    cameras = services["ingest-rtsp"]
    assert "hostname" not in cameras
    assert "IOC_CAMERA_WORKER_ID" not in environment(cameras)


def test_camera_workers_log_in_with_a_required_password(
    services: dict[str, dict[str, Any]],
) -> None:
    """In production the camera roles refuse the development-default camera password: compose
    must not start one without a real password."""
    env = environment(services["ingest-rtsp"])
    assert REQUIRED_VAR.match(env["IOC_RTSP_PASSWORD"]), env["IOC_RTSP_PASSWORD"]
    assert "9102/readyz" in " ".join(services["ingest-rtsp"]["healthcheck"]["test"])
    assert Settings.model_fields["rtsp_metrics_port"].default == 9102
    seed = environment(services["seed"])
    assert seed["IOC_RTSP_BASE_URL"].endswith("rtsp://rtsp:8554}")  # the `rtsp` service
    assert "IOC_RTSP_PASSWORD" not in seed  # seeding logs in to no camera


def test_no_literal_secrets(services: dict[str, dict[str, Any]]) -> None:
    checked = 0
    for name, svc in services.items():
        for key, value in environment(svc).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert REQUIRED_VAR.match(value), f"{name}.{key} must be ${{VAR:?...}}: {value!r}"
                checked += 1
            for password in re.findall(r"://[^:/@]+:([^@]+)@", value):
                assert REQUIRED_VAR.match(password), f"{name}.{key} embeds a literal password"
    assert checked >= 5  # db, mqtt and the app's four


def test_app_settings(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in app_services(services).items():
        env = environment(svc)
        assert env["IOC_ENVIRONMENT"] == "production", name
        assert env["IOC_LOG_FORMAT"] == "json", name
        assert "@db:5432/ioc" in env["IOC_DATABASE_URL"], name
        assert env["IOC_MQTT_HOST"] == "mqtt" and env["IOC_MQTT_PORT"] == "1883", name
        assert env["IOC_API_HOST"] == "0.0.0.0", name
        # In production the settings refuse a default for each of these: all must be given.
        for key in (
            "IOC_PG_PASSWORD",
            "IOC_SECRET_KEY",
            "IOC_MQTT_INGEST_PASSWORD",
            "IOC_MQTT_SIM_PASSWORD",
            "IOC_MQTT_DEVICE_SECRET",
        ):
            assert key in env, f"{name}: {key} missing"
    db_env = environment(services["db"])
    assert db_env["POSTGRES_USER"] == "ioc" and db_env["POSTGRES_DB"] == "ioc"


def _condition(svc: dict[str, Any], dep: str) -> str | None:
    deps = svc.get("depends_on") or {}
    if isinstance(deps, list):
        return "service_started" if dep in deps else None
    return (deps.get(dep) or {}).get("condition")


def test_start_up_order(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert _condition(services["migrate"], "db") == "service_healthy"
    for name, svc in app_services(services).items():
        if name == "migrate":
            continue
        assert _condition(svc, "db") == "service_healthy", name
        assert _condition(svc, "migrate") == "service_completed_successfully", name
    for name in ("ingest-mqtt", "simulator"):
        assert _condition(services[name], "mqtt") == "service_healthy", name
    assert _condition(services["simulator"], "seed") == "service_completed_successfully"


def test_long_running_roles_are_supervised(services: dict[str, dict[str, Any]]) -> None:
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
    for name in ("migrate", "seed", "mqtt-logins"):
        assert services[name].get("restart") == "no", f"{name} is one-shot"
    for name in ("db", "mqtt"):
        assert services[name].get("restart") == "unless-stopped", name
        assert services[name].get("healthcheck", {}).get("test"), name


def _mosquitto_dir(services: dict[str, dict[str, Any]]) -> Path:
    for volume in services["mqtt"]["volumes"]:
        source, target = str(volume).split(":")[:2]
        if target == "/mosquitto/config":
            assert source.startswith("./"), "the broker config ships with the repo"
            return ROOT / source
    pytest.fail("mqtt mounts no /mosquitto/config")


def _directives(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out.setdefault(key, value.strip())
    return out


def test_mosquitto_config(services: dict[str, dict[str, Any]]) -> None:
    config_dir = _mosquitto_dir(services)
    conf = _directives(config_dir / "mosquitto.conf")
    assert conf["allow_anonymous"] == "false"
    assert conf["persistence"] == "true"
    assert conf["listener"].split()[0] == "1883"
    for key in ("password_file", "acl_file"):
        assert conf[key].startswith("/mosquitto/config/"), key
    acl = config_dir / Path(conf["acl_file"]).relative_to("/mosquitto/config")
    assert acl.is_file(), f"{conf['acl_file']} is not in the repo"
    # The committed ACL is the generated production one (no ioc-sim); `mqtt-logins` rewrites
    # it from the same function at every start.
    defaults = Settings(_env_file=None, mqtt_ingest_user="ioc-ingest", mqtt_sim_user="ioc-sim")
    assert acl.read_text() == mqtt_logins.acl_text(defaults, sim_login=False)
    assert "pattern write ioc/v1/traffic/%u/observation" in acl.read_text()


def test_mqtt_tls_listener_and_generated_logins(services: dict[str, dict[str, Any]]) -> None:
    mqtt = services["mqtt"]
    text = (_mosquitto_dir(services) / "mosquitto.conf").read_text()
    lines = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
    tls = lines[lines.index("listener 8883") :]
    for key, name in (("cafile", "ca.crt"), ("certfile", "server.crt"), ("keyfile", "server.key")):
        assert f"{key} /mosquitto/certs/{name}" in tls, key
    assert "require_certificate false" in tls  # devices log in with their own password
    targets = {re.sub(r"\$\{[^}]*\}", "SRC", str(v)).split(":")[1] for v in mqtt["volumes"]}
    assert "/mosquitto/certs" in targets
    assert [str(p) for p in mqtt["ports"]] == ["8883:8883"]  # plain 1883 stays inside
    assert _condition(mqtt, "mqtt-logins") == "service_completed_successfully"
    logins = services["mqtt-logins"]
    assert logins["command"][:2] == ["mqtt", "sync-logins"]
    out = logins["command"][logins["command"].index("--out") + 1]
    assert f"./deploy/mosquitto:{out}" in logins["volumes"]
    assert _condition(logins, "seed") == "service_completed_successfully"
