"""The shipped Prometheus rules: valid (promtool check), correct (promtool test rules), and
naming only metrics the worker and the alert forwarder export; the Grafana dashboard too."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from prometheus_client.metrics_core import Metric

from streams.alerts.metrics import AlertMetrics
from streams.worker.metrics import WorkerMetrics
from tests.alerts.services import binary

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "fleetgate.json"
_NAME = re.compile(r"\bfleetgate_[a-z_]+")
_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


def _promtool(*args: str) -> str:
    done = subprocess.run(
        [binary("promtool"), *args], cwd=PROM, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def exported() -> dict[str, str]:
    """Every sample name the worker's and the forwarder's registries can expose -> its family."""
    out: dict[str, str] = {}
    families: list[Metric] = [*WorkerMetrics().registry.collect(), *AlertMetrics().registry.collect()]
    for m in families:
        for suffix in _SUFFIXES.get(m.type, ("",)):
            out[m.name + suffix] = m.name
    return out


def test_promtool_checks_the_rules_and_the_example_config() -> None:
    assert "SUCCESS: 20 rules found" in _promtool("check", "rules", "fleetgate.rules.yml")
    _promtool("check", "config", "prometheus.yml")


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in _promtool("test", "rules", "fleetgate.rules.test.yml")


def test_rules_and_dashboard_name_only_exported_metrics() -> None:
    names = exported()
    for path in (PROM / "fleetgate.rules.yml", PROM / "fleetgate.rules.test.yml", DASHBOARD):
        used = set(_NAME.findall(path.read_text()))
        assert used, path
        assert used <= set(names), (
            f"{path.name} names metrics the worker does not export: {used - set(names)}"
        )


def test_the_dashboard_shows_every_metric() -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for p in board["panels"] for t in p.get("targets", ()))
    shown = {exported()[n] for n in _NAME.findall(exprs)}
    assert shown == set(exported().values())
    assert board["uid"] == "fleetgate" and board["templating"]["list"][0]["name"] == "datasource"
