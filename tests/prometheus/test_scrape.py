"""Debian's Prometheus scrapes a running `fleetgate worker` and evaluates the shipped rules.

The worker runs as the pipeline tests run it (tests/pipeline/harness.py), on a small
mixed-format fleet with poison records, so decode errors, decisions and a watermark exist.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from streams.config import load_settings
from tests.alerts.services import Prometheus, port, wait_until
from tests.pipeline import fleet
from tests.pipeline.harness import WorkerProcess, scenario_env
from tests.prometheus.test_rules import DASHBOARD, PROM

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def test_prometheus_scrapes_the_worker_and_the_rules_evaluate(
    settings_env: dict[str, str], unique: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(fleet.POLICY_YAML)
    env = scenario_env(settings_env, f"{unique}-prom", policy, devices=120)
    metrics_port = port()
    env["FLEETGATE_METRICS_PORT"] = str(metrics_port)
    settings = load_settings(env)
    t0 = int(time.time() * 1000) - 120_000
    fleet.publish_plan(settings, fleet.plan(t0))
    fleet.produce(settings, fleet.events(fleet.Fleet.make(), t0, bad_model="cam-c1"), poison_every=500)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    prom = Prometheus(tmp_path, port(), [f"127.0.0.1:{metrics_port}"], [PROM / "fleetgate.rules.yml"])
    try:
        prom.start()
        wait_until("the worker scraped", lambda: prom.query('up{job="fleetgate-worker"} == 1'), 120, worker)
        lag = wait_until(
            "the rollout's watermark lag",
            lambda: prom.query(f'fleetgate_watermark_lag_ms{{rollout="{fleet.ROLLOUT}"}}'),
            timeout_s=120,
            proc=worker,
        )
        assert lag[0]["metric"]["job"] == "fleetgate-worker"
        assert lag[0]["metric"]["instance"] == f"127.0.0.1:{metrics_port}"
        topics = {s["metric"]["topic"] for s in prom.query("fleetgate_events_total")}
        assert {"telemetry", "acks"} <= topics  # the worker labels events with the short topic name
        wait_until("decisions counted", lambda: prom.query("fleetgate_decisions_total"), 120, worker)
        errors = wait_until(
            "decode errors counted", lambda: prom.query("fleetgate_decode_errors_total"), 120, worker
        )
        # per firmware (poison carries none it could be read from: "unknown"), for the surge alert
        assert {s["metric"].get("firmware") for s in errors} == {"unknown"}, errors
        wait_until("consumer lag", lambda: prom.query("fleetgate_consumer_lag"), proc=worker)
        # The recording rules produce series from the real ones (joins and all) ...
        for record in (
            f'fleetgate:watermark_lag_seconds:max{{rollout="{fleet.ROLLOUT}"}}',
            # joins decode errors (full topic names) with events (short ones)
            'fleetgate:decode_error_ratio:rate5m{topic="telemetry"}',
            "fleetgate:consumer_lag:sum",
            "fleetgate:decisions:rate5m",
        ):
            wait_until(record, lambda r=record: prom.query(r), proc=worker)
        # ... and every rule evaluates without error against them.
        rules = wait_until(
            "every rule evaluated",
            lambda: (
                (rs := prom.rules()) and all(r.get("lastEvaluation", "").startswith("2") for r in rs) and rs
            ),
        )
        assert {r["name"]: r["health"] for r in rules} == {r["name"]: "ok" for r in rules}, rules
        # The dashboard's queries parse and run here too (Grafana's variables filled in).
        board = json.loads(DASHBOARD.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", ()):  # a row has none
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$__range", "5m")
                prom.query(expr.replace("$rollout", ".*"))
    finally:
        prom.stop()
        assert worker.stop() == 0, worker.tail()
