"""The executor's pure state machine: ``decide(status, decision) -> Verdict``.

No Kafka, Redis or clock here.  The runner checks decision ids it has already seen
(duplicates) before calling :func:`decide`; everything else that makes a decision
ignorable is decided here, with a machine-readable reason.

States (``gates.events.RolloutState``)::

    (none) --start--> ACTIVE --PROCEED--> ACTIVE (next stage) ... --PROCEED on last--> COMPLETED
    ACTIVE --PAUSE--> PAUSED --operator resume--> ACTIVE
    ACTIVE | PAUSED --ROLLBACK--> ROLLING_BACK --every target settled--> ROLLED_BACK
    HOLD changes nothing.
    ACTIVE | PAUSED --gate PAUSE/ROLLBACK naming a slice--> same state, the slice stopped
    (streams/executor/slice_stops.py: left out of later dispatches; ROLLBACK: rolled back)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from enum import StrEnum

from gates.events import ATTRIBUTE_NAMES, Action, Decision, DecisionSource, RolloutState
from streams.executor.plans import PlanSpec
from streams.executor.slice_stops import SliceStop

__all__ = [
    "Ignore",
    "Move",
    "RolloutStatus",
    "Transition",
    "Verdict",
    "command_id",
    "decide",
    "is_start",
    "operator_decision_id",
]

START_PREFIX = "start:"
RESUME_PREFIX = "resume:"
_FINISHED = (RolloutState.COMPLETED, RolloutState.ROLLED_BACK, RolloutState.ROLLING_BACK)


class Move(StrEnum):
    START = "start"
    ADVANCE = "advance"
    COMPLETE = "complete"
    HOLD = "hold"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    SLICE_PAUSE = "slice_pause"
    SLICE_ROLLBACK = "slice_rollback"


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """What the executor knows about one rollout (persisted in Redis)."""

    spec: PlanSpec
    state: RolloutState
    current_stage: int
    updated_at_ms: int
    acted_windows: dict[int, int] = field(default_factory=dict)  # stage -> last acted gate window end
    rollback_stages: tuple[int, ...] = ()
    last_decision_id: str = ""
    slice_stops: tuple[SliceStop, ...] = ()  # slices left out of later dispatches (slice_stops.py)


@dataclass(frozen=True, slots=True)
class Ignore:
    reason: str  # duplicate | unknown_rollout | already_started | finished | future_stage | stale_stage | stale_window | not_paused | paused | already_paused
    detail: str


@dataclass(frozen=True, slots=True)
class Transition:
    move: Move
    status: RolloutStatus  # the new status (for START: the caller supplies the spec)
    dispatch_stage: int | None = None  # stage whose UPDATE commands to send
    rollback_stages: tuple[int, ...] = ()  # stages to roll back
    slice_stop: SliceStop | None = None  # SLICE_PAUSE / SLICE_ROLLBACK: the slice stopped now


Verdict = Ignore | Transition


def is_start(d: Decision) -> bool:
    return (
        d.source is DecisionSource.OPERATOR
        and d.action is Action.PROCEED
        and (d.note or "").startswith(START_PREFIX)
    )


def slice_of(d: Decision) -> dict[str, str] | None:
    """The slice a decision is scoped to; None: the whole stage.  A slice naming an attribute the
    inventory does not have could match no device, so it is read as the whole stage (the safe
    side, as an executor that does not know the field reads it)."""
    if not d.slice or not set(d.slice) <= set(ATTRIBUTE_NAMES):
        return None
    return dict(d.slice)


def _is_resume(d: Decision) -> bool:
    return d.source is DecisionSource.OPERATOR and (d.note or "").startswith(RESUME_PREFIX)


def decide(status: RolloutStatus | None, d: Decision, spec: PlanSpec | None, now_ms: int) -> Verdict:
    """What to do with decision ``d`` given the rollout's ``status`` (None: not started).

    ``spec`` is the stored plan definition, needed only for a start decision.
    """
    if status is None:
        if not is_start(d):
            return Ignore("unknown_rollout", "no rollout with this id was started")
        if spec is None:
            return Ignore("plan_missing", "start decision without a stored plan definition")
        if d.stage != 0:
            return Ignore("future_stage", f"a start must name stage 0, not {d.stage}")
        st = RolloutStatus(spec, RolloutState.ACTIVE, 0, now_ms, {}, (), d.decision_id)
        return Transition(Move.START, st, dispatch_stage=0)
    if is_start(d):
        return Ignore("already_started", f"rollout is {status.state.value} at stage {status.current_stage}")
    if status.state in _FINISHED:
        return Ignore("finished", f"rollout is {status.state.value}")
    scoped = slice_of(d)
    if scoped is not None:
        return _slice_stop(status, d, scoped, now_ms)
    if d.stage > status.current_stage:
        return Ignore(
            "future_stage", f"decision for stage {d.stage}, rollout is at stage {status.current_stage}"
        )
    if d.stage < status.current_stage:
        return Ignore(
            "stale_stage", f"decision for stage {d.stage}, rollout is at stage {status.current_stage}"
        )
    gate = d.source is DecisionSource.GATE
    last = status.acted_windows.get(d.stage)
    if gate and last is not None and d.window_end_ms < last:
        return Ignore("stale_window", f"window ends {d.window_end_ms} before last acted window end {last}")
    windows = dict(status.acted_windows)
    if gate:
        windows[d.stage] = max(d.window_end_ms, last if last is not None else d.window_end_ms)
    base = replace(
        status,
        acted_windows=windows,
        last_decision_id=d.decision_id,
        updated_at_ms=max(now_ms, status.updated_at_ms),
    )
    paused = status.state is RolloutState.PAUSED
    action = d.action
    if action is Action.PROCEED:
        if _is_resume(d):
            if not paused:
                return Ignore("not_paused", f"resume of a rollout that is {status.state.value}")
            return Transition(Move.RESUME, replace(base, state=RolloutState.ACTIVE))
        if paused:
            return Ignore("paused", "PROCEED while PAUSED: only an operator resume restarts dispatching")
        nxt = status.current_stage + 1
        if nxt >= len(status.spec.stages):
            return Transition(Move.COMPLETE, replace(base, state=RolloutState.COMPLETED))
        return Transition(Move.ADVANCE, replace(base, current_stage=nxt), dispatch_stage=nxt)
    if action is Action.HOLD:
        return Transition(Move.HOLD, base)
    if action is Action.PAUSE:
        if paused:
            return Ignore("already_paused", "PAUSE while PAUSED")
        return Transition(Move.PAUSE, replace(base, state=RolloutState.PAUSED))
    # ROLLBACK: the gate rolls back the stage its evidence is about; an operator the whole rollout so far
    stages = (d.stage,) if gate else tuple(range(d.stage + 1))
    st = replace(base, state=RolloutState.ROLLING_BACK, rollback_stages=stages)
    return Transition(Move.ROLLBACK, st, rollback_stages=stages)


def _slice_stop(status: RolloutStatus, d: Decision, scoped: dict[str, str], now_ms: int) -> Verdict:
    """A PAUSE / ROLLBACK of one slice: the rollout keeps its state and stage.  Accepted for the
    current stage and the ones before it (the gate still judges those: a slice of a stage moved
    past can still show its late failures, and leaving it out of later stages is only safer).
    No window check: a stop only narrows what is dispatched, so its order does not matter."""
    if d.action not in (Action.PAUSE, Action.ROLLBACK):
        return Ignore("slice_action", f"{d.action.value} of a slice: only PAUSE and ROLLBACK are scoped")
    if d.stage > status.current_stage:
        return Ignore(
            "future_stage", f"decision for stage {d.stage}, rollout is at stage {status.current_stage}"
        )
    stop = SliceStop.of(scoped, d.action, d.stage, d.decision_id)
    if any(s.covers(stop) for s in status.slice_stops):
        return Ignore("slice_stopped", f"slice {dict(stop.values)} is stopped at {d.action.value} already")
    stops = tuple(s for s in status.slice_stops if s.values != stop.values) + (stop,)
    st = replace(
        status,
        slice_stops=stops,
        last_decision_id=d.decision_id,
        updated_at_ms=max(now_ms, status.updated_at_ms),
    )
    move = Move.SLICE_ROLLBACK if d.action is Action.ROLLBACK else Move.SLICE_PAUSE
    return Transition(move, st, slice_stop=stop)


def command_id(rollout_id: str, stage: int, kind: str, device_id: str, version: str) -> str:
    """Deterministic command id: a re-send after a restart carries the same id."""
    raw = f"{rollout_id}\x1f{stage}\x1f{kind}\x1f{device_id}\x1f{version}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def operator_decision_id(
    rollout_id: str, stage: int, action: Action, operator: str, note: str, time_ms: int
) -> str:
    raw = f"{rollout_id}\x1f{stage}\x1f{action.value}\x1f{operator}\x1f{note}\x1f{time_ms}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
