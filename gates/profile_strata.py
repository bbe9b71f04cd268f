"""A cohort's aggregates per connectivity profile, which the rules on link-dependent metrics
(latency, reconnect, error and report rates) weigh to the treated side's mix of profiles
(:mod:`gates.standardize`).

Aggregates are keyed by the devices' full slice, which holds their connectivity profile, so the
aggregates of any cohort split by profile are sums of keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gates.aggregates import KNOWN_SEP, VERSION_WIDE, CohortKey, WindowAggregate
from gates.slices import DIM_POSITION, label_of
from gates.stage_state import StageState

__all__ = ["Strata", "by_label", "by_profile", "stage_strata", "strata", "window_parts"]

_PROFILE = DIM_POSITION["connectivity_profile"]
Strata = tuple[tuple[str, WindowAggregate, WindowAggregate | None], ...]  # (profile, treated, baseline)
Windows = dict[int, dict[CohortKey, WindowAggregate]]


def _profile(slice_key: str) -> str:
    parts = slice_key.split(KNOWN_SEP)
    return parts[_PROFILE] if len(parts) > _PROFILE else ""


def window_parts(
    wins: Windows, lo: int, hi: int, pick: Callable[[CohortKey], bool]
) -> Iterable[tuple[str, WindowAggregate]]:
    """(full slice key, aggregate) of the keys ``pick`` selects in windows ``lo..hi``."""
    for i in range(lo, hi + 1):
        for key, agg in wins.get(i, {}).items():
            if pick(key):
                yield key.slice, agg


def by_profile(
    parts: Iterable[tuple[str, WindowAggregate]], into: dict[str, WindowAggregate] | None = None
) -> dict[str, WindowAggregate]:
    """The sum of ``parts`` per connectivity profile."""
    out: dict[str, WindowAggregate] = {} if into is None else into
    for slice_key, agg in parts:
        p = _profile(slice_key)
        mine = out.get(p)
        if mine is None:
            mine = out[p] = WindowAggregate()
        mine.merge(agg)
    return out


def by_label(
    parts: Iterable[tuple[str, WindowAggregate]],
    dims: tuple[str, ...],
    into: dict[str, dict[str, WindowAggregate]],
) -> None:
    """The sum of ``parts`` per (slice label along ``dims``, connectivity profile)."""
    for slice_key, agg in parts:
        by_profile([(slice_key, agg)], into.setdefault(label_of(slice_key, dims), {}))


def strata(treated: dict[str, WindowAggregate], baseline: dict[str, WindowAggregate]) -> Strata:
    return tuple((p, treated[p], baseline.get(p)) for p in sorted(treated))


def stage_strata(
    wins: Windows,
    lo: int,
    idx: int,
    stage: int,
    pooled: StageState | None,
    skip: Callable[[str], bool] | None,
) -> Strata:
    """The stage's treated and baseline aggregates per profile over windows ``lo..idx``, as the
    decider sums them: the control's windows, or (``pooled``: that stage's state) its pre-update
    slices with the control windows since its first exposure; slices ``skip`` names left out."""

    def treated(k: CohortKey) -> bool:
        return not k.is_baseline and k.cohort == stage and (skip is None or not skip(k.slice))

    def control(k: CohortKey) -> bool:
        return k.is_baseline and k.cohort != VERSION_WIDE and bool(k.cohort >> stage & 1)

    base: dict[str, WindowAggregate] = {}
    first = lo
    if pooled is not None:
        by_profile(((k, a) for k, a in pooled.pre_slices.items() if skip is None or not skip(k)), base)
        first = max(lo, pooled.first_exposed if pooled.first_exposed is not None else lo)
    by_profile(window_parts(wins, first, idx, control), base)
    return strata(by_profile(window_parts(wins, lo, idx, treated)), base)
