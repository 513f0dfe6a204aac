"""The centre's own monitoring: deploy/prometheus/ioc-alerts.yml and deploy/grafana/ioc-dashboard.json.

Both files parse; every alert rule is complete; every metric they use is exported by the code
(registered when the modules that use prometheus_client are imported, or declared in their
source, under the names /metrics shows) or is a Prometheus built-in, or is listed in PLANNED,
and then only in rules and panels marked as planned; every selector names the job that owns
the metric. With promtool installed (Debian's `prometheus` package) the rules also pass
`promtool check` and their unit tests (deploy/prometheus/ioc-alerts.test.yml).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "ioc-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "ioc-alerts.test.yml"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ioc-dashboard.json"
SOURCE_DIRS = ("ioc", "ingest", "streams", "simulators")

# Metrics the rules and the dashboard use before the code exports them: {name: what it is}.
# When one appears in the code, this test says so: take it off the list and drop the
# "planned" marks. Empty today.
PLANNED: dict[str, str] = {}
# Which scrape job owns each family of metrics. A role process also exports, at zero, the
# metrics of other roles whose modules it imported: selectors must name the owner.
OWNERS = {
    "ioc_ingest_": "ioc-ingest",
    "ioc_camera_": "ioc-rtsp",
    "ioc_alerts_": "ioc-alerts",
    "ioc_rollup_": "ioc-rollups",
    "ioc_stream_": "ioc-api",
    "ioc_database_up": "ioc-api",
    "ioc_db_pool_": "ioc-api",
}
# The scrape ports of prometheus.yml are the roles' defaults (ioc/config.py).
JOB_PORTS = {
    "ioc-api": "api_port",
    "ioc-ingest": "ingest_metrics_port",
    "ioc-rtsp": "rtsp_metrics_port",
    "ioc-alerts": "alerts_metrics_port",
    "ioc-rollups": "rollups_metrics_port",
}
# Series Prometheus makes itself (scrape health, alert state).
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}
SEVERITIES = {"critical", "warning", "info"}

_DECLARED = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*[\"']([a-zA-Z_:][a-zA-Z0-9_:]*)[\"']"
)
_SUFFIXES = {
    "Counter": ("_total", "_created"),
    "Gauge": ("",),
    "Histogram": ("_bucket", "_sum", "_count", "_created"),
    "Summary": ("", "_sum", "_count", "_created"),
    "Info": ("_info",),
    "Enum": ("",),
}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"}


_FAMILY_SERIES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}


def metric_modules() -> list[str]:
    """Our modules that use prometheus_client."""
    found = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if "prometheus_client" in path.read_text(encoding="utf-8"):
                rel = path.relative_to(ROOT).with_suffix("")
                found.append(".".join(rel.parts).removesuffix(".__init__"))
    return found


def exported_by_code() -> set[str]:
    """Series names on /metrics for every metric the code declares: what the default registry
    holds once those modules are imported (custom collectors included), plus what the source
    declares with the standard constructors."""
    from prometheus_client import REGISTRY

    for module in metric_modules():
        importlib.import_module(module)
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in _FAMILY_SERIES.get(family.type, ("",)))
    for folder in SOURCE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            for kind, name in _DECLARED.findall(path.read_text(encoding="utf-8")):
                if kind == "Counter":
                    name = name.removesuffix("_total")
                names.update(name + suffix for suffix in _SUFFIXES[kind])
    return names


def default_collectors() -> set[str]:
    """process_* and python_* from prometheus_client's default registry (the code serves it)."""
    from prometheus_client import REGISTRY

    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
    return {n for n in names if n.startswith(("process_", "python_"))}


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label matchers, ranges, strings and functions out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    found = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        name, call = m.group(1), m.group(2)
        if call or name in _KEYWORDS:
            continue
        found.add(name)
    return found


def load_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


# --------------------------------------------------------------------------------- rules ---


def test_every_rule_is_complete() -> None:
    rules = load_rules()
    assert rules
    names = [r.get("alert") for r in rules]
    assert all(names), "every rule is an alert rule with a name"
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        where = rule["alert"]
        assert isinstance(rule.get("expr"), str) and rule["expr"].strip(), where
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{where}: for"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{where}: severity"
        assert rule.get("annotations", {}).get("summary"), f"{where}: annotations.summary"
        assert where.startswith("Ioc"), f"{where}: the dashboard counts rules named Ioc*"


def test_the_failures_the_issue_names_are_watched() -> None:
    exprs = {r["alert"]: r["expr"] for r in load_rules()}
    watched = {
        "IocWorkerDown": "up{",
        "IocIngestStalled": "ioc_ingest_last_stored_timestamp_seconds",
        "IocIngestLagGrowing": "ioc_ingest_lag_seconds_bucket",
        "IocDeadLettersRising": "ioc_ingest_rejected_total",
        "IocDatabaseUnreachable": "ioc_database_up",
        "IocIngestDatabaseUnreachable": "ioc_ingest_database_ok_timestamp_seconds",
        "IocWebsocketResyncStorm": "ioc_stream_resyncs_total",
        "IocCameraLeasesUnowned": "ioc_camera_leases_unowned",
        "IocAlertEngineStalled": "ioc_alerts_last_cycle_timestamp_seconds",
    }
    for alert, metric in watched.items():
        assert metric in exprs[alert], alert


def all_exprs() -> list[tuple[str, str]]:
    """(where, expr) of every rule and every panel target."""
    found = [(f"rule {r['alert']}", r["expr"]) for r in load_rules()]
    for panel in panels(load_dashboard()["panels"]):
        found += [(f"panel {panel['title']!r}", t["expr"]) for t in panel.get("targets", [])]
    return found


def test_every_selector_names_the_job_that_owns_the_metric() -> None:
    """Every process exports other roles' metrics at zero (the modules it imported): a rule
    without the owner's job would see a stalled worker everywhere, or hide a real one."""
    for where, expr in all_exprs():
        for name, selector in re.findall(r"\b(ioc_[a-z0-9_]+)(\{[^}]*\})?", expr):
            owner = next((job for prefix, job in OWNERS.items() if name.startswith(prefix)), None)
            assert owner, f"{where}: which job owns {name}? (add it to OWNERS)"
            assert f'job="{owner}"' in selector, f"{where}: {name} without job={owner!r}"


def test_prometheus_example_scrapes_the_jobs_the_rules_name() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    assert config["rule_files"] == ["ioc-alerts.yml"]
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    named = set()
    for rule in load_rules():
        named.update(re.findall(r'job="([^"]+)"', rule["expr"]))
    assert named <= jobs, named - jobs
    assert jobs == set(JOB_PORTS)
    from ioc.config import Settings

    for job in config["scrape_configs"]:
        ports = {sd["port"] for sd in job.get("dns_sd_configs", [])}
        default = Settings.model_fields[JOB_PORTS[job["job_name"]]].default
        assert ports == {default}, f"{job['job_name']}: port {ports}, the role's default {default}"


# ----------------------------------------------------------------------------- dashboard ---


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = load_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    inputs = {i["name"] for i in dash["__inputs"]}
    assert inputs == {"DS_PROMETHEUS"}
    ids = [p["id"] for p in panels(dash["panels"])]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in panels(dash["panels"]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("description"), f"{panel['title']}: say what it shows"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_dashboard_shows_what_the_rules_watch() -> None:
    exprs = " ".join(
        t["expr"] for p in panels(load_dashboard()["panels"]) for t in p.get("targets", [])
    )
    for rule in load_rules():
        for name in metric_names(rule["expr"]) - BUILTIN:
            assert name in exprs, f"{rule['alert']} watches {name}, which no panel shows"


# ------------------------------------------------------------------------------- metrics ---


def test_every_metric_used_exists_or_is_planned() -> None:
    known = exported_by_code() | default_collectors() | BUILTIN
    used = {name: where for where, expr in all_exprs() for name in metric_names(expr)}
    unknown = {name: where for name, where in used.items() if name not in known | set(PLANNED)}
    assert not unknown, f"metrics neither exported by the code nor PLANNED: {unknown}"
    assert "ioc_ingest_stored_total" in used and "ioc_ingest_stored_total" in known
    assert "ioc_db_pool_waiting" in known, "custom collectors count too"


def test_planned_metrics_are_not_exported_yet_and_are_marked() -> None:
    exported = exported_by_code()
    arrived = sorted(set(PLANNED) & exported)
    assert not arrived, f"now exported by the code: take {arrived} off PLANNED and unmark them"
    for rule in load_rules():
        uses_planned = bool(metric_names(rule["expr"]) & set(PLANNED))
        marked = rule["labels"].get("planned") == "true"
        assert uses_planned == marked, f"{rule['alert']}: planned label"
    for panel in panels(load_dashboard()["panels"]):
        uses = set().union(*(metric_names(t["expr"]) for t in panel.get("targets", [])))
        if uses & set(PLANNED):
            assert "(planned metric)" in panel["title"], panel["title"]


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(ioc_ingest_lag_seconds_bucket{job="x"}[5m])))'
        ' > 30 and on() absent(up{job="a b"} == 1) or vector(0) * 1e-9'
    )
    assert metric_names(expr) == {"ioc_ingest_lag_seconds_bucket", "up"}


# ------------------------------------------------------------------------------ promtool ---


# scripts/provision.sh unpacks promtool into .tools/bin (Debian's prometheus package).
PROMTOOL = shutil.which("promtool") or shutil.which("promtool", path=str(ROOT / ".tools" / "bin"))


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")
def test_promtool_accepts_the_rules_and_their_tests_pass() -> None:
    assert PROMTOOL is not None
    for argv in (
        [PROMTOOL, "check", "rules", str(RULES)],
        [PROMTOOL, "check", "config", str(PROMETHEUS)],
        [PROMTOOL, "test", "rules", str(RULE_TESTS)],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
