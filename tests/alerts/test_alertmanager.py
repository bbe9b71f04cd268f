"""`fleetgate alerts` against Debian's real Alertmanager, on real decision records.

The decisions are the gate engine's own (a simulated canary whose updates fail), encoded and
produced to a test's own control topic like the worker does.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from gates.events import Action
from streams.alerts import AlertForwarder, AlertOptions
from streams.config import Settings
from streams.executor.kafka import produce_decision
from streams.executor.operator import operator_decision
from tests.alerts.cohort import proceeded, rolled_back, run_until
from tests.alerts.services import Alertmanager, Recorder, wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _notes(recorder: Recorder, rollout: str, status: str) -> list[dict]:
    """Alertmanager's webhook notifications of one rollout's group with `status`."""
    return [
        n for n in recorder.got("/am") if n["groupLabels"].get("rollout") == rollout and n["status"] == status
    ]


def test_rolled_back_cohort_is_one_alert_and_proceed_resolves_it(
    control: Settings, alertmanager: Alertmanager, recorder: Recorder, unique: str
) -> None:
    rid = f"r-{unique}"
    hold, rollback = rolled_back(rid)
    for d in (hold, rollback):
        produce_decision(control, d)
    hook = f"/hook-{unique}"
    opts = AlertOptions(
        alertmanager_urls=(alertmanager.url,), webhook_urls=(recorder.url + hook,), resend_ms=3_600_000
    )
    fw = AlertForwarder(control, opts)
    try:
        run_until(fw, lambda: fw.stats.get("firing", 0) >= 1)
        # The same decision again, re-published as by a restarted worker (same id) ...
        produce_decision(control, rollback)
        run_until(fw, lambda: fw.stats.get("firing", 0) >= 2)
        sent = fw.metrics.registry.get_sample_value
        assert sent("fleetgate_alerts_sent_total", {"target": "alertmanager", "status": "firing"}) == 2
        assert (
            sent("fleetgate_alerts_sent_total", {"target": f"webhook {recorder.url}", "status": "firing"})
            == 2
        )
        assert sent("fleetgate_alerts_open") == 1
    finally:
        fw.close()
    # ... and consumed by a second forwarder (own group: it reads the topic from the start).
    fw = AlertForwarder(control, replace(opts, group=f"g-{unique}-again"))
    try:
        run_until(fw, lambda: fw.stats.get("firing", 0) >= 1)
        active = alertmanager.alerts(rollout=rid)
        assert len(active) == 1, active
        alert = active[0]
        assert alert["labels"] == {
            "alertname": "FleetgateRolloutRolledBack",
            "severity": "critical",
            "rollout": rid,
            "stage": "0",
            "stage_name": "canary",
            "action": "ROLLBACK",
            "source": "GATE",
            "rule": "ack-failure",
            "policy_version": "test-1",
            "decision_id": rollback.decision_id,
        }
        assert "ack-failure" in alert["annotations"]["summary"]
        reasons = json.loads(alert["annotations"]["reasons"])
        assert [r["rule_id"] for r in reasons if r["verdict"] == "breach"] == ["ack-failure"]
        assert alert["status"]["state"] == "active"
        firing = wait_until("Alertmanager's notification", lambda: _notes(recorder, rid, "firing"))

        produce_decision(control, proceeded(rid))  # the stage is healthy again
        run_until(fw, lambda: fw.stats.get("resolved", 0) >= 1)
        wait_until("the alert resolved", lambda: not alertmanager.alerts(rollout=rid))
        resolved = wait_until("the resolved notification", lambda: _notes(recorder, rid, "resolved"))
    finally:
        fw.close()
    firing = _notes(recorder, rid, "firing")
    assert len(firing) == 1 and len(firing[0]["alerts"]) == 1, firing  # notified exactly once
    assert resolved[0]["alerts"][0]["labels"]["decision_id"] == rollback.decision_id
    hooks = recorder.got(hook)
    assert {h["dedup_key"] for h in hooks} == {
        f"{rollback.decision_id}:firing",
        f"{rollback.decision_id}:resolved",
    }
    assert all(h["labels"]["rule"] == "ack-failure" for h in hooks)


def test_operator_pause_alerts_and_resume_resolves(
    control: Settings, alertmanager: Alertmanager, unique: str
) -> None:
    rid = f"r-{unique}"
    now = int(time.time() * 1000)
    pause = operator_decision("pause", rid, 1, "eu", "alice", "CHG-7 freeze", now, "default-1")
    produce_decision(control, pause)
    fw = AlertForwarder(control, AlertOptions(alertmanager_urls=(alertmanager.url,)))
    try:
        run_until(fw, lambda: fw.stats.get("firing", 0) >= 1)
        (alert,) = alertmanager.alerts(rollout=rid)
        assert alert["labels"]["action"] == "PAUSE" and alert["labels"]["source"] == "OPERATOR"
        assert alert["labels"]["rule"] == "operator" and alert["labels"]["stage"] == "1"
        assert alert["annotations"]["operator"] == "alice"
        assert alert["annotations"]["note"] == "pause: CHG-7 freeze"
        produce_decision(
            control, operator_decision("resume", rid, 1, "eu", "bob", "ok", now + 1, "default-1")
        )
        run_until(fw, lambda: fw.stats.get("resolved", 0) >= 1)
        wait_until("the alert resolved", lambda: not alertmanager.alerts(rollout=rid))
    finally:
        fw.close()
    assert pause.action is Action.PAUSE
