"""Per-slice evidence of one stage evaluation (see :mod:`gates.slices`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from gates.aggregates import CohortKey, WindowAggregate
from gates.policy import GatePolicy
from gates.profile_strata import by_label, strata
from gates.rules import Evidence
from gates.slices import group, slice_specs, values_of
from gates.stage_state import StageState, add_cum

__all__ = ["slice_evidence"]

Windows = dict[int, dict[CohortKey, WindowAggregate]]


def _by_slice(
    wins: Windows, lo: int, hi: int, pick: Callable[[CohortKey], bool]
) -> dict[str, WindowAggregate]:
    out: dict[str, WindowAggregate] = {}
    for i in range(lo, hi + 1):
        for key, agg in wins.get(i, {}).items():
            if pick(key):
                mine = out.get(key.slice)
                if mine is None:
                    mine = out[key.slice] = WindowAggregate()
                mine.merge(agg)
    return out


def slice_evidence(
    policy: GatePolicy,
    stage_ev: Evidence,
    st: StageState,
    wins: Windows,
    lo: int,
    idx: int,
    stage: int,
    pooled: bool,
    skip: Callable[[str], bool] | None = None,
) -> list[Evidence]:
    """One Evidence per slice of the stage with data; slices that are the whole stage are skipped.

    ``skip`` names full slice keys of slices stopped already: their devices leave the stage's
    treated side and its pre-update baseline (gates.slice_stops).
    """
    specs = slice_specs(policy)
    if not specs:
        return []

    def keep(key: str) -> bool:
        return skip is None or not skip(key)

    treated_pick = lambda k: not k.is_baseline and k.cohort == stage and keep(k.slice)  # noqa: E731
    base_pick = lambda k: k.is_baseline and k.cohort != -1 and k.cohort >> stage & 1  # noqa: E731
    treated = _by_slice(wins, lo, idx, treated_pick)
    now = _by_slice(wins, idx, idx, treated_pick)
    first = st.first_exposed if st.first_exposed is not None else lo
    control = _by_slice(wins, max(lo, first) if pooled else lo, idx, base_pick)
    cum: dict[str, WindowAggregate] = {}
    for k, agg in st.cum_slices.items():
        if not keep(k):
            continue
        mine = cum[k] = WindowAggregate()
        add_cum(mine, agg)
        at_ack = st.ack_slices.get(k)
        if at_ack is not None:
            add_cum(mine, at_ack, -1)
    stage_slices = set(treated) | set(cum)
    out: list[Evidence] = []
    empty = WindowAggregate()
    seen: set[frozenset[str]] = set()
    for dims in specs:
        t: dict[str, WindowAggregate] = {}
        b: dict[str, WindowAggregate] = {}
        c: dict[str, WindowAggregate] = {}
        n: dict[str, WindowAggregate] = {}
        group(treated.items(), dims, t)
        group(control.items(), dims, b)
        if pooled:
            group(((k, a) for k, a in st.pre_slices.items() if keep(k)), dims, b)
        group(cum.items(), dims, c)
        group(now.items(), dims, n)
        prof_t: dict[str, dict[str, WindowAggregate]] = {}
        prof_b: dict[str, dict[str, WindowAggregate]] = {}
        by_label(treated.items(), dims, prof_t)
        by_label(control.items(), dims, prof_b)
        if pooled:
            by_label(((k, a) for k, a in st.pre_slices.items() if keep(k)), dims, prof_b)
        members: dict[str, set[str]] = {}
        for k in stage_slices:
            members.setdefault(group_label(k, dims), set()).add(k)
        for lab in sorted(set(t) | set(c)):
            who = frozenset(members.get(lab, ()))
            if len(who) == len(stage_slices) or who in seen:
                # the whole stage (the stage-wide evaluation covers it), or the same devices as a
                # slice already taken (e.g. region=eu,profile=cellular when all are eu): one test
                continue
            seen.add(who)
            ta, ca, na = t.get(lab, empty), c.get(lab, empty), n.get(lab, empty)
            if ta.reports + ca.terminal + ca.ack_timeouts < policy.slice_min_samples:
                continue
            out.append(
                dataclasses.replace(
                    stage_ev,
                    treated=ta,
                    baseline=b.get(lab, empty),
                    cumulative=ca,
                    exposed=ca.commanded,
                    in_flight=na.in_flight,
                    in_flight_until=na.in_flight_until,
                    stage_devices=na.stage_devices,
                    label=lab,
                    profiles=strata(prof_t.get(lab, {}), prof_b.get(lab, {})),
                    slice=values_of(next(iter(who)), dims),
                )
            )
    return out


def group_label(slice_key: str, dims: tuple[str, ...]) -> str:
    from gates.slices import label_of

    return label_of(slice_key, dims)
