"""The pure part: which decisions open, repeat or resolve which alert, and the payloads."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gates.events import Action, Decision, DecisionSource, Reason
from streams.alerts import (
    Alert,
    AlertBook,
    AlertmanagerTarget,
    DeliveryRejected,
    DeliveryUnavailable,
    alert_for,
)
from streams.alerts.model import iso
from streams.executor.operator import operator_decision
from tests.alerts.services import Recorder, port

TTL = 3_600_000
BREACH = Reason("ack-failure", "ack_failure_rate", "breach", 0.3, 0.01, 0.02, 120, firmware_version="2.0.0")
PENDING = Reason("continuity", "telemetry_continuity", "pending", None, None, 0.8, 3)


def gate(
    action: Action, stage: int = 0, did: str = "d1", reasons: tuple[Reason, ...] = (BREACH,)
) -> Decision:
    return Decision(
        did, "r1", stage, "canary", action, DecisionSource.GATE, 0, 60_000, 61_000, "p-7", "e-1", reasons
    )


def test_labels_name_the_culprit_and_the_decision() -> None:
    a = alert_for(gate(Action.ROLLBACK, reasons=(PENDING, BREACH)), 1_000, TTL)
    assert a.labels == {
        "alertname": "FleetgateRolloutRolledBack",
        "severity": "critical",
        "rollout": "r1",
        "stage": "0",
        "stage_name": "canary",
        "action": "ROLLBACK",
        "source": "GATE",
        "rule": "ack-failure",
        "firmware": "2.0.0",
        "policy_version": "p-7",
        "decision_id": "d1",
    }
    body = a.to_alertmanager()
    assert body["startsAt"] == "1970-01-01T00:00:01.000Z" and body["endsAt"] == iso(1_000 + TTL)
    assert [r["rule_id"] for r in json.loads(body["annotations"]["reasons"])] == ["continuity", "ack-failure"]
    assert "pending continuity" in body["annotations"]["description"]


def test_a_slice_becomes_a_label_once_decisions_carry_one() -> None:
    @dataclasses.dataclass(frozen=True)
    class SlicedReason:  # the shape a reason will have once decisions gain a slice
        rule_id: str = "errors"
        metric: str = "error_rate"
        verdict: str = "breach"
        observed: float = 0.2
        baseline: float = 0.01
        threshold: float = 2.0
        sample_size: int = 50
        firmware_version: str | None = None
        detail: str = ""
        slice: str = "model=cam-c1"

    d = dataclasses.replace(gate(Action.PAUSE), reasons=(SlicedReason(),))  # type: ignore[arg-type]
    assert alert_for(d, 0, TTL).labels["slice"] == "model=cam-c1"
    assert (
        "slice" not in alert_for(gate(Action.PAUSE), 0, TTL).labels
    )  # empty: left out, as Alertmanager does


def test_repeats_are_one_alert_and_proceed_resolves_the_stage() -> None:
    book = AlertBook()
    (first,) = book.on_decision(gate(Action.PAUSE), 1_000, TTL)
    (again,) = book.on_decision(gate(Action.PAUSE), 5_000, TTL)  # redelivered: the same alert
    assert again == first
    book.on_decision(gate(Action.ROLLBACK, stage=1, did="d2"), 2_000, TTL)
    assert book.on_decision(gate(Action.HOLD, did="d3", reasons=()), 3_000, TTL) == []
    (done,) = book.on_decision(gate(Action.PROCEED, did="d4", reasons=()), 9_000, TTL)
    assert done.decision_id == "d1" and done.status == "resolved" and done.ends_at_ms == 9_000
    assert done.labels == first.labels and done.annotations["resolved_by"] == "d4"
    assert list(book.open) == ["d2"]  # the other stage's alert stays open
    assert book.on_decision(gate(Action.PAUSE), 10_000, TTL) == []  # a late copy does not re-open it


def test_operator_pause_opens_resume_resolves_start_does_nothing() -> None:
    book = AlertBook()
    start = operator_decision("start", "r1", 0, "canary", "alice", "go", 1)
    assert book.on_decision(start, 1, TTL) == []
    (p,) = book.on_decision(operator_decision("pause", "r1", 0, "canary", "alice", "freeze", 2), 2, TTL)
    assert p.labels["rule"] == "operator" and p.annotations["operator"] == "alice"
    (r,) = book.on_decision(operator_decision("resume", "r1", 0, "canary", "bob", "ok", 3), 3, TTL)
    assert r.decision_id == p.decision_id and r.status == "resolved"


def test_expire_forgets_old_alerts_and_resolved_ids() -> None:
    book = AlertBook()
    book.on_decision(gate(Action.PAUSE), 0, TTL)
    book.on_decision(gate(Action.PAUSE, stage=1, did="d2"), 0, TTL)
    book.on_decision(gate(Action.PROCEED, stage=1, did="d3", reasons=()), 10, TTL)
    assert book.expire(TTL - 1, TTL) == []
    assert sorted(book.expire(TTL + 10, TTL)) == ["d1", "d2"]
    assert not book.open and not book.resolved


def test_json_round_trip() -> None:
    a = alert_for(gate(Action.ROLLBACK), 5, TTL).resolve("d9", 7)
    assert Alert.from_json(a.to_json()) == a


def test_alertmanager_target_classifies_answers() -> None:
    rec = Recorder(port())
    try:
        target = AlertmanagerTarget([rec.url + "/am"], timeout_s=5)
        a = alert_for(gate(Action.PAUSE), 0, TTL)
        rec.fail["/am/api/v2/alerts"] = [503, 400]
        with pytest.raises(DeliveryUnavailable, match="503"):
            target.send([a])
        with pytest.raises(DeliveryRejected, match="400"):
            target.send([a])
        target.send([a])
        assert rec.got("/am/api/v2/alerts") == [[a.to_alertmanager()]]
        with pytest.raises(ValueError, match="not an http"):
            AlertmanagerTarget(["file:///etc/passwd"])
    finally:
        rec.close()
