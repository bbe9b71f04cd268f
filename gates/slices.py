"""Slices of a stage: every rule is also evaluated per value of each slice dimension (and per
pair of dimensions), with Holm's step-down procedure across the slices of a rule so that more
slices do not mean more false stops (Holm 1979, "A simple sequentially rejective multiple test
procedure").

A slice is a set of the stage's devices sharing inventory values, e.g.
``@region=apac,connectivity_profile=cellular``.  Aggregates arrive keyed by the devices' full
slice (model, firmware generation, region, connectivity profile; see
:class:`gates.aggregates.CohortKey`), so any slice is a sum of keys.  Slices only add breaches:
a slice never holds a PROCEED the stage-wide evidence gives (its small samples would hold every
stage), but a regression confined to one slice stops the stage (or, with ``slices.action:
slice``, names the slice to exclude).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from itertools import combinations

from gates.aggregates import KNOWN_SEP, WindowAggregate
from gates.events import Reason
from gates.policy import GatePolicy, Metric, Rule
from gates.rules import BREACH, Evidence, evaluate_rule

__all__ = ["DIM_POSITION", "group", "holm_breaches", "slice_specs", "values_of"]

# position of each sliceable inventory attribute in CohortKey.slice
DIM_POSITION = {"model": 0, "firmware_generation": 1, "region": 2, "connectivity_profile": 3}
_UNSLICED = (Metric.DECODE_ERROR_RATE,)  # version-wide: no devices to slice


def slice_specs(policy: GatePolicy) -> list[tuple[str, ...]]:
    """The dimension sets to slice along: each dimension, and each pair when enabled."""
    dims = [d for d in policy.slice_dimensions if d in DIM_POSITION]
    out: list[tuple[str, ...]] = [(d,) for d in dims]
    if policy.slice_pairs:
        out += list(combinations(dims, 2))
    return out


def label_of(slice_key: str, dims: tuple[str, ...]) -> str:
    values = slice_key.split(KNOWN_SEP)
    return "@" + ",".join(f"{d}={values[DIM_POSITION[d]]}" for d in dims)


def values_of(slice_key: str, dims: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The (dimension, value) pairs of the slice along ``dims`` a full slice key belongs to."""
    values = slice_key.split(KNOWN_SEP)
    return tuple((d, values[DIM_POSITION[d]]) for d in dims)


def group(
    parts: Iterable[tuple[str, WindowAggregate]], dims: tuple[str, ...], into: dict[str, WindowAggregate]
) -> None:
    """Add per-full-slice aggregates into per-label sums along ``dims``."""
    for key, agg in parts:
        lab = label_of(key, dims)
        mine = into.get(lab)
        if mine is None:
            mine = into[lab] = WindowAggregate()
        mine.merge(agg)


def holm_breaches(
    rule: Rule,
    evidence: list[Evidence],
    policy: GatePolicy,
    at: Callable[[Evidence, float], Evidence] = lambda ev, a: dataclasses.replace(ev, alpha=a),
) -> list[Reason]:
    """The slice parts of ``rule`` that breach under Holm's step-down at the policy's alpha.

    Holm rejects the i-th smallest of m p-values when every smaller one was rejected and it is at
    most alpha / (m - i + 1); rejecting at once every test that breaches at alpha / (m - k) (k
    rejected so far) and then re-testing the rest is the same procedure.
    """
    if rule.metric in _UNSLICED or not evidence:
        # relative rules compare each slice with its own devices' baseline; an absolute threshold
        # is a budget no slice may exceed (a tenth of one model failing its update is a regression
        # even when the stage-wide rate is inside the budget)
        return []
    decided = {}
    for ev in evidence:
        for r in evaluate_rule(rule, ev, policy):
            if not r.detail.startswith(("needs", "baseline needs")) and r.sample_size > 0:
                decided[r.metric] = ev
    m = len(decided)
    out: dict[str, Reason] = {}
    while len(out) < m:
        a = policy.alpha / (m - len(out))
        new = {}
        for ev in {id(e): e for e in decided.values()}.values():
            for r in evaluate_rule(rule, at(ev, a), policy):
                if r.verdict == BREACH and r.metric in decided and r.metric not in out:
                    new[r.metric] = dataclasses.replace(
                        r, detail=f"{r.detail}; Holm alpha {a:.2g} of {m} slices"
                    )
        if not new:
            break
        out.update(new)
    return [out[k] for k in sorted(out)]
