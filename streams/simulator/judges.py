"""Score one recorded rollout: the gate's decisions and an AWS IoT Jobs-style abortConfig.

Both judges see the same trace (``streams.simulator.rollout.RolloutTrace``) and answer, per
stage, when it would have been stopped (and, for the gate, when it was first allowed to
proceed).  What an executor obeys is the *first* decisive action of a stage: after a PROCEED it
has moved on, and a later PAUSE or ROLLBACK of that stage is stale (the reference executor
ignores it), so a stop counts only before the stage's first PROCEED.

The abortConfig judge models one AWS IoT job per stage, judged only on job executions (acks):
an execution starts (IN_PROGRESS) with the device's first ack, ends SUCCEEDED with APPLIED or
FAILED/REJECTED, and becomes TIMED_OUT when no terminal status arrives within
``in_progress_timeout_ms`` of its start (``timeoutConfig.inProgressTimeoutInMinutes``; a
terminal status arriving later no longer counts).  The job is aborted at the first moment at
least ``min_executed`` things have received it (started) and failures (``failureType: ALL``:
FAILED, REJECTED, TIMED_OUT) are at least ``threshold_pct`` % of those.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from gates.events import AckStatus, Action, Decision, DecisionSource
from streams.simulator.rollout import RolloutTrace

__all__ = ["AbortConfig", "StageResult", "judge"]

_STOPS = (Action.PAUSE, Action.ROLLBACK)


@dataclass(frozen=True, slots=True)
class AbortConfig:
    threshold_pct: float = 5.0
    min_executed: int = 50
    in_progress_timeout_ms: int = 30 * 60_000

    def describe(self) -> str:
        return (
            f"abortConfig failureType ALL, thresholdPercentage {self.threshold_pct:g}, "
            f"minNumberOfExecutedThings {self.min_executed}, inProgressTimeout "
            f"{self.in_progress_timeout_ms // 60_000} min"
        )


@dataclass(frozen=True, slots=True)
class StageResult:
    """One stage of one trace, as both judges saw it (plain data: crosses process boundaries)."""

    scenario: str
    seed: int
    stage: int
    members: int
    affected: int  # devices of the bad cohort that showed the fault
    dispatch_ms: int
    onset_ms: int | None  # the fault began on a device of the stage
    visible_ms: int | None  # the first event showing it left a device of the stage
    first_action: str | None  # first decisive gate action: PROCEED, PAUSE, ROLLBACK (None: only HOLD)
    first_action_ms: int | None  # its window end
    stop_ms: int | None  # window end of the first stop, if before any PROCEED
    stop_rule: str | None
    late_stop_ms: int | None  # a stop after the stage's PROCEED (an executor would ignore it)
    proceed_ms: int | None  # window end of the first PROCEED
    abort_ms: int | None  # abortConfig: when the job would have been cancelled
    abort_failures: int  # abortConfig: failed + timed-out executions at the end of the trace
    abort_executed: int

    @property
    def bad(self) -> bool:
        return self.affected > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(trace: RolloutTrace, decisions: list[Decision], abort: AbortConfig) -> list[StageResult]:
    gate = [d for d in decisions if d.source is DecisionSource.GATE and d.rollout_id == trace.rollout_id]
    gate.sort(key=lambda d: (d.window_end_ms, d.stage))
    aborts = _abort_config(trace, abort)
    out = []
    for run in trace.stages:
        mine = [d for d in gate if d.stage == run.index]
        decisive = next((d for d in mine if d.action is not Action.HOLD), None)
        proceed = next((d for d in mine if d.action is Action.PROCEED), None)
        stop = next((d for d in mine if d.action in _STOPS), None)
        early = (
            stop
            if stop is not None and (proceed is None or stop.window_end_ms < proceed.window_end_ms)
            else None
        )
        late = stop if stop is not None and early is None else None
        ab_ms, failures, executed = aborts[run.index]
        out.append(
            StageResult(
                trace.scenario,
                trace.seed,
                run.index,
                len(run.members),
                len(run.affected),
                run.dispatch_ms,
                run.onset_ms,
                run.visible_ms,
                None if decisive is None else decisive.action.value,
                None if decisive is None else decisive.window_end_ms,
                None if early is None else early.window_end_ms,
                None if stop is None else _culprit(stop),  # the first stop's, before or after a PROCEED
                None if late is None else late.window_end_ms,
                None if proceed is None else proceed.window_end_ms,
                ab_ms,
                failures,
                executed,
            )  # fmt: skip
        )
    return out


def _culprit(d: Decision) -> str:
    return ",".join(sorted({f"{r.rule_id}:{r.metric}" for r in d.reasons if r.verdict == "breach"})) or "?"


def _abort_config(trace: RolloutTrace, cfg: AbortConfig) -> dict[int, tuple[int | None, int, int]]:
    """Per stage: (abort time or None, failures, executions started) under ``cfg``."""
    stage_of = {d: run.index for run in trace.stages for d in run.members}
    start: dict[str, int] = {}
    end: dict[str, tuple[int, bool]] = {}  # device -> (arrival, failed)
    for arrival, a in trace.acks:
        d = a.device_id
        if d not in stage_of or d in end:
            continue
        if a.status is AckStatus.ROLLED_BACK:
            continue
        start.setdefault(d, arrival)
        if a.status.terminal:
            end[d] = (arrival, a.status.failure)
    events: dict[int, list[tuple[int, int, int]]] = {run.index: [] for run in trace.stages}
    for d, s in start.items():
        k = stage_of[d]
        events[k].append((s, 1, 0))  # started
        deadline = s + cfg.in_progress_timeout_ms
        e = end.get(d)
        if e is None or e[0] > deadline:
            if deadline <= trace.end_ms:
                events[k].append((deadline, 0, 1))  # TIMED_OUT
        elif e[1]:
            events[k].append((e[0], 0, 1))  # FAILED / REJECTED
    out: dict[int, tuple[int | None, int, int]] = {}
    for k, evs in events.items():
        evs.sort()
        executed = failures = 0
        when: int | None = None
        for t, started, failed in evs:
            executed += started
            failures += failed
            if (
                when is None
                and executed >= cfg.min_executed
                and 100 * failures >= cfg.threshold_pct * executed
            ):
                when = t
        out[k] = (when, failures, executed)
    return out
