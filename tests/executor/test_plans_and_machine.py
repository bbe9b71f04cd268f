"""Pure tests: plan validation and the decision state machine (no broker, no Redis)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gates.events import Action, Decision, DecisionSource, RolloutState
from gates.policy import load_policy
from streams.executor.errors import PlanError
from streams.executor.machine import Ignore, Move, RolloutStatus, Transition, decide
from streams.executor.operator import operator_decision
from streams.executor.plans import load_plan, parse_plan
from tests.executor.helpers import PLAN, gate

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "plans").glob("*.yaml")))
def test_example_plans_are_valid(name: str) -> None:
    spec = load_plan(REPO / "plans" / name)
    shipped = {
        load_policy((REPO / "policies" / f.name).read_text()).version
        for f in (REPO / "policies").glob("*.yaml")
    }
    assert spec.stages and spec.policy_version in shipped  # every example names a policy we ship


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("stages"), "stages: required key is missing"),
        (lambda d: d.update(target_kind="BOOTLOADER"), "target_kind: expected FIRMWARE or CONFIG"),
        (lambda d: d["stages"][1].update(percent=0), "stages[1].percent"),
        (
            lambda d: d["stages"][0]["selector"].update(colour=["red"]),
            "stages[0].selector.colour: unknown attribute",
        ),
        (lambda d: d.update(surprise=1), "unknown key(s) ['surprise']"),
        (lambda d: d.update(previous_version="2.0"), "target_version: equals previous_version"),
        (lambda d: d["stages"].append({"name": "internal"}), "duplicate stage names"),
        (lambda d: d.update(rollout_id="bad id!"), "rollout_id: use letters"),
        (lambda d: d.update(policy="nope.yaml"), "policy: no such policy file"),
    ],
)
def test_plan_errors_name_the_key(change, message) -> None:
    data = copy.deepcopy(PLAN)
    change(data)
    with pytest.raises(PlanError, match=None) as info:
        parse_plan(data, "p.yaml")
    assert message in str(info.value) and str(info.value).startswith("p.yaml")


def test_plan_yaml_is_safe_loaded(tmp_path: Path) -> None:
    f = tmp_path / "evil.yaml"
    f.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(PlanError, match="invalid YAML"):
        load_plan(f)


def _status(state: RolloutState = RolloutState.ACTIVE, stage: int = 1, windows=None) -> RolloutStatus:
    return RolloutStatus(parse_plan(PLAN), state, stage, 1_000, dict(windows or {}))


def test_start_then_duplicate_start_ignored() -> None:
    spec = parse_plan(PLAN)
    d = operator_decision("start", "fw-test", 0, "internal", "alice", "go", 5)
    v = decide(None, d, spec, 5)
    assert isinstance(v, Transition) and v.move is Move.START and v.dispatch_stage == 0
    again = decide(v.status, operator_decision("start", "fw-test", 0, "internal", "bob", "go", 6), spec, 6)
    assert isinstance(again, Ignore) and again.reason == "already_started"
    assert decide(None, gate("fw-test", 0, Action.PROCEED, 10), None, 5) == Ignore(
        "unknown_rollout", "no rollout with this id was started"
    )


@pytest.mark.parametrize(
    ("decision", "reason"),
    [
        (gate("fw-test", 0, Action.ROLLBACK, 600_000), "stale_stage"),
        (gate("fw-test", 2, Action.PROCEED, 600_000), "future_stage"),
        (gate("fw-test", 1, Action.PAUSE, 240_000), "stale_window"),
    ],
)
def test_stale_and_out_of_order_ignored(decision: Decision, reason: str) -> None:
    v = decide(_status(windows={1: 300_000}), decision, None, 10)
    assert isinstance(v, Ignore) and v.reason == reason


def test_same_window_re_evaluation_is_not_stale() -> None:
    v = decide(_status(windows={1: 300_000}), gate("fw-test", 1, Action.PAUSE, 300_000), None, 10)
    assert isinstance(v, Transition) and v.status.state is RolloutState.PAUSED


def test_pause_resume_and_gate_proceed_while_paused() -> None:
    paused = _status(RolloutState.PAUSED)
    v = decide(paused, gate("fw-test", 1, Action.PROCEED, 400_000), None, 10)
    assert isinstance(v, Ignore) and v.reason == "paused"
    r = decide(paused, operator_decision("resume", "fw-test", 1, "low", "alice", "fixed", 11), None, 11)
    assert isinstance(r, Transition) and r.move is Move.RESUME and r.status.state is RolloutState.ACTIVE
    nr = decide(_status(), operator_decision("resume", "fw-test", 1, "low", "alice", "x", 12), None, 12)
    assert isinstance(nr, Ignore) and nr.reason == "not_paused"


def test_proceed_advances_and_completes() -> None:
    v = decide(_status(stage=1), gate("fw-test", 1, Action.PROCEED, 400_000), None, 10)
    assert isinstance(v, Transition) and v.move is Move.ADVANCE and v.dispatch_stage == 2
    last = decide(_status(stage=3), gate("fw-test", 3, Action.PROCEED, 400_000), None, 10)
    assert isinstance(last, Transition) and last.status.state is RolloutState.COMPLETED
    hold = decide(_status(), gate("fw-test", 1, Action.HOLD, 400_000), None, 10)
    assert isinstance(hold, Transition) and hold.status.state is RolloutState.ACTIVE
    assert hold.status.acted_windows == {1: 400_000}


def test_rollback_scope_gate_vs_operator() -> None:
    g = decide(_status(stage=2), gate("fw-test", 2, Action.ROLLBACK, 400_000), None, 10)
    assert isinstance(g, Transition) and g.rollback_stages == (2,)
    op = decide(_status(stage=2), operator_decision("rollback", "fw-test", 2, "eu", "al", "bad", 9), None, 10)
    assert isinstance(op, Transition) and op.rollback_stages == (0, 1, 2)
    done = decide(g.status, gate("fw-test", 2, Action.PROCEED, 500_000), None, 11)
    assert isinstance(done, Ignore) and done.reason == "finished"


def test_operator_decision_shape() -> None:
    d = operator_decision("pause", "fw-test", 1, "low", "alice", "too many reboots", 42)
    assert d.source is DecisionSource.OPERATOR and d.action is Action.PAUSE
    assert d.note == "pause: too many reboots" and d.operator == "alice" and len(d.decision_id) == 32
    assert (
        d.decision_id
        != operator_decision("pause", "fw-test", 1, "low", "alice", "too many reboots", 43).decision_id
    )
