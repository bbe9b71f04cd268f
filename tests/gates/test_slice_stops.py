"""`slices.action: slice`: a regression confined to one slice stops only that slice (a decision
naming it) while the rest of the stage goes on; a stage-wide breach still stops the stage."""

from __future__ import annotations

import dataclasses
import hashlib

from gates.decider import decision_id
from gates.engine import Engine
from gates.events import Action, Decision
from gates.policy import load_policy
from gates.stage_state import StageState
from tests.gates.field import Field

STAGE = load_policy(open("policies/default.yaml").read())
SLICE = dataclasses.replace(STAGE, slice_action="slice")
STOPS = (Action.PAUSE, Action.ROLLBACK)
FAILING_M1 = Field(fail_model="m1", fail_rate=0.08)  # 8 % of one model, 4 % of the stage
SLOW_CELLULAR = Field(slow_slice=("eu", "cellular"), slow_factor=3.0)


def run(f: Field, policy: object, cut: int | None = None, stage: int | None = 0) -> list[Decision]:
    """The field through the engine; ``cut``: snapshot and restore after that many events."""
    eng = Engine(policy)  # type: ignore[arg-type]
    out: list[Decision] = []
    evs = f.events()
    for i in range(0, len(evs), 2000):
        if cut is not None and i == cut:
            eng = Engine.restore(policy, eng.snapshot())  # type: ignore[arg-type]
        out.extend(eng.step(evs[i : i + 2000]))
    out.extend(eng.advance(f.end))
    return [d for d in out if stage is None or d.stage == stage]


def test_failures_confined_to_one_model_roll_back_only_that_model() -> None:
    got = run(FAILING_M1, SLICE)
    sliced = [d for d in got if d.slice is not None]
    assert [(d.action, d.slice) for d in sliced] == [(Action.ROLLBACK, {"model": "m1"})]
    assert sliced[0].reasons and all(r.metric.endswith("@model=m1") for r in sliced[0].reasons)
    assert any(r.verdict == "breach" and r.metric == "ack_failure_rate@model=m1" for r in sliced[0].reasons)
    stage = [d for d in got if d.slice is None]
    assert not [d for d in stage if d.action in STOPS]  # the rest of the stage is not stopped ...
    assert stage[-1].action is Action.PROCEED  # ... and goes on once the slice has left its evidence
    assert stage[-1].window_end_ms > sliced[0].window_end_ms


def test_a_later_stage_dispatched_without_the_slice_proceeds() -> None:
    """The executor leaves a stopped slice out of later stages: the gate leaves it out of their
    evidence too (never updated, its devices would keep the later stage's coverage low for ever)."""
    f = dataclasses.replace(FAILING_M1, next_stage_min=45, skip_model="m1", after_min=150)
    got = run(f, SLICE, stage=None)
    assert [(d.stage, d.slice) for d in got if d.slice is not None] == [(0, {"model": "m1"})]
    later = [d.action for d in got if d.stage == 1]
    assert later[-1] is Action.PROCEED and not set(later) & set(STOPS)


def test_under_action_stage_the_same_slice_stops_the_whole_stage() -> None:
    got = run(FAILING_M1, STAGE)
    assert all(d.slice is None for d in got)
    stop = next(d for d in got if d.action in STOPS)
    assert stop.action is Action.ROLLBACK
    assert any(r.verdict == "breach" and r.metric == "ack_failure_rate@model=m1" for r in stop.reasons)
    assert Action.PROCEED not in [d.action for d in got]


def test_a_slow_slice_is_paused_and_the_stage_proceeds() -> None:
    got = run(SLOW_CELLULAR, SLICE)
    sliced = [d for d in got if d.slice is not None]
    assert [(d.action, d.slice) for d in sliced] == [(Action.PAUSE, {"connectivity_profile": "cellular"})]
    stage = [d for d in got if d.slice is None]
    assert not [d for d in stage if d.action in STOPS]
    assert stage[-1].action is Action.PROCEED
    # under `stage` the stage itself is paused
    assert [d.action for d in run(SLOW_CELLULAR, STAGE) if d.action in STOPS] == [Action.PAUSE]


def test_a_stage_wide_breach_still_stops_the_stage() -> None:
    """A tenth of one model failing shows stage-wide too: the stage stops, the slice with it."""
    got = run(Field(fail_model="m1", fail_rate=0.1), SLICE)
    assert [d for d in got if d.slice is not None] == []
    stop = next(d for d in got if d.action in STOPS)
    assert stop.action is Action.ROLLBACK
    assert any(r.verdict == "breach" and r.metric == "ack_failure_rate" for r in stop.reasons)
    assert [(d.decision_id, d.action) for d in got] == [
        (d.decision_id, d.action) for d in run(Field(fail_model="m1", fail_rate=0.1), STAGE)
    ]


def test_ids_replay_and_snapshots_are_deterministic() -> None:
    once = run(FAILING_M1, SLICE)
    assert run(FAILING_M1, SLICE) == once
    assert run(FAILING_M1, SLICE, cut=30_000) == once  # restored mid-way from a snapshot
    sliced = next(d for d in once if d.slice is not None)
    assert (
        sliced.decision_id
        == decision_id("r1", 0, sliced.window_end_ms, sliced.action, SLICE.version, "@model=m1")
        != decision_id("r1", 0, sliced.window_end_ms, sliced.action, SLICE.version)
    )
    # a stage decision's id is the one it always had: no label, nothing appended
    raw = f"r1\x1f0\x1f{sliced.window_end_ms}\x1fROLLBACK\x1f{SLICE.version}".encode()
    assert (
        decision_id("r1", 0, sliced.window_end_ms, Action.ROLLBACK, SLICE.version)
        == (hashlib.sha256(raw).hexdigest()[:32])
    )
    assert len({d.decision_id for d in once}) == len(once)


def test_snapshots_keep_slice_stops_and_old_ones_load() -> None:
    st = StageState()
    st.slice_stops["@region=apac,connectivity_profile=cellular"] = (
        Action.PAUSE,
        (("region", "apac"), ("connectivity_profile", "cellular")),
    )
    back = StageState.from_dict(st.to_dict())
    assert back.slice_stops == st.slice_stops
    old = st.to_dict()
    del old["ss"]  # a snapshot written before slice stops existed
    assert StageState.from_dict(old).slice_stops == {}
