"""Stops scoped to a culprit slice (``slices.action: slice``).

Under ``slices.action: stage`` a rule's slice breaches (:func:`gates.slices.holm_breaches`) count
like its stage-wide parts: they stop the whole stage.  Under ``slice`` they are kept apart.  Each
(rule, slice) has its own consecutive-breach streak.  While one builds, the stage HOLDs: the
regression is not shown yet, and a PROCEED now would dispatch the slice to the next stage.  Once
it reaches the rule's ``consecutive`` the slice is stopped at the rule's action by a decision
naming it, and the stage goes on being judged on its stage-wide evidence.  A slice already
stopped at an action is no reason for the stage to hold; a stage stopping at that action or above
stops the slice with it, so no slice decision is emitted then.  Each (rollout, stage, slice) is
emitted once per escalation (PAUSE, then ROLLBACK in the same evaluation); the last one is in
:attr:`gates.stage_state.StageState.slice_stops`, part of the decider's snapshot.

A stopped slice then leaves the stage's treated evidence, stage-wide and per slice, and that of
every later stage (:func:`stopped_keys`): its updated devices go on reporting what stopped them,
and counted in the stage, or in an overlapping slice (a model's cellular devices), they would
stop the rest of the stage for the regression already contained; in a later stage they are
never dispatched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gates.aggregates import KNOWN_SEP, WindowAggregate
from gates.events import Action, Reason
from gates.policy import Rule
from gates.rules import BREACH, Evidence
from gates.slices import DIM_POSITION
from gates.stage_state import StageState, add_cum

__all__ = ["SliceVerdicts", "culprits", "label_of_metric", "rest_of_stage", "stopped_keys", "track"]

_SEP = "\x1f"  # between the rule id and the slice label in a streak's name


def label_of_metric(metric: str) -> str:
    """``"@model=m1"`` of ``"ack_failure_rate@model=m1"`` ("" for a stage-wide metric)."""
    at = metric.find("@")
    return metric[at:] if at >= 0 else ""


class SliceVerdicts:
    """One evaluation's slice stops: the action each culprit slice's streaks fired, and whether
    some slice breach is still building towards its rule's ``consecutive``."""

    __slots__ = ("building", "fired", "values")

    def __init__(self, sliced: Iterable[Evidence]) -> None:
        self.fired: dict[str, Action] = {}
        self.building = False
        self.values = {ev.label: ev.slice for ev in sliced}


def track(st: StageState, rule: Rule, parts: list[Reason], idx: int, out: SliceVerdicts) -> None:
    """Fold one rule's slice parts into its (rule, slice) streaks; a slice not breaching resets."""
    breached = {label_of_metric(r.metric) for r in parts if r.verdict == BREACH}
    prefix = rule.id + _SEP
    names = {prefix + lab for lab in breached} | {n for n in st.streaks if n.startswith(prefix)}
    for name in sorted(names):
        lab = name[len(prefix) :]
        hit = lab in breached
        count = st.streak(name, idx, hit)
        if not hit:
            continue
        if count >= rule.consecutive:
            cur = out.fired.get(lab)
            if cur is None or rule.action.rank > cur.rank:
                out.fired[lab] = rule.action
        else:
            stopped = st.slice_stops.get(lab)
            if stopped is None or stopped[0].rank < rule.action.rank:
                out.building = True


def culprits(
    st: StageState, stage_action: Action, out: SliceVerdicts, reasons: Iterable[Reason]
) -> list[tuple[str, Action, dict[str, str], tuple[Reason, ...]]]:
    """``(label, action, slice, its reasons)`` per slice to stop now, in label order; recorded in
    ``st`` (so each is returned once per escalation)."""
    reasons = tuple(reasons)
    got = []
    for lab in sorted(out.fired):
        action = out.fired[lab]
        prev = st.slice_stops.get(lab)
        if stage_action.rank >= action.rank or (prev is not None and prev[0].rank >= action.rank):
            continue  # the stage stops with it, or the slice is stopped at this action already
        values = out.values.get(lab, ())
        st.slice_stops[lab] = (action, values)
        mine = tuple(r for r in reasons if label_of_metric(r.metric) == lab)
        got.append((lab, action, dict(values), mine))
    return got


def stopped_keys(stages: Iterable[StageState | None]) -> Callable[[str], bool] | None:
    """Whether a full slice key (``CohortKey.slice``) is in a slice stopped already; None: none is.

    ``stages``: the states of the stage judged and of every stage before it.  A slice stopped in
    an earlier stage is left out of every later dispatch, so its devices of a later stage are
    never updated: counted there, they would hold it for ever (coverage).
    """
    wanted = [
        [(DIM_POSITION[d], v) for d, v in values]
        for st in stages
        if st is not None
        for _, values in st.slice_stops.values()
    ]
    if not wanted:
        return None

    def stopped(key: str) -> bool:
        parts = key.split(KNOWN_SEP)
        return any(all(parts[i] == v for i, v in pairs) for pairs in wanted)

    return stopped


def rest_of_stage(
    st: StageState, skip: Callable[[str], bool] | None
) -> tuple[WindowAggregate | None, WindowAggregate]:
    """The stage's pre-update baseline and its cumulative counts since the last acknowledgement,
    without the slices ``skip`` names (the stage's own when it is None)."""
    cum = WindowAggregate()
    add_cum(cum, st.cum)
    add_cum(cum, st.cum_at_ack, -1)
    if skip is None or st.pre_baseline is None and not st.cum_slices:
        return st.pre_baseline, cum
    for key, agg in st.cum_slices.items():
        if skip(key):
            add_cum(cum, agg, -1)
            at_ack = st.ack_slices.get(key)
            if at_ack is not None:
                add_cum(cum, at_ack)
    pre = None
    if st.pre_baseline is not None:  # the sum of pre_slices (gates.decider._pre_baseline)
        pre = WindowAggregate()
        for key, agg in sorted(st.pre_slices.items()):
            if not skip(key):
                pre.merge(agg)
    return pre, cum
