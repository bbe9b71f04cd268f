"""Direct standardization of a latency baseline by connectivity profile.

Latency is a property of the link: the quantile of a population that mixes always-on, cellular
and sleepy devices sits in one link's mode or another's by the mix.  Comparing a treated side
with a baseline of another mix compares mixes; weighting the baseline to the treated mix
compares link by link.
"""

from __future__ import annotations

from dataclasses import dataclass

from gates.sketch import DDSketch

__all__ = ["Standardized", "Strata", "standardize"]

Strata = tuple[tuple[str, DDSketch | None, DDSketch | None], ...]  # (profile, treated, baseline)
_SCALE = 1_000_000  # weights as integer bin counts: rounding moves a quantile by < 1e-4 of a rank


@dataclass(frozen=True)
class Standardized:
    """Treated latency of the profiles compared, and the baseline reweighted to their mix."""

    treated: DDSketch
    baseline: DDSketch  # bins scaled: read ranks from ``baseline.count``, size intervals by ``n_eff``
    n_eff: float  # Kish effective sample size of the reweighted baseline
    left_out: tuple[str, ...]  # treated profiles the baseline has too few samples of


def standardize(parts: Strata, min_baseline: int) -> Standardized | None:
    """Direct standardization by connectivity profile, or None when there is nothing to weigh.

    Each profile with at least ``min_baseline`` baseline samples is compared: the treated side
    keeps its samples of those profiles, and the baseline's samples of profile p are weighted so
    that p has the treated share s_p of the baseline's weight.  The baseline then has the mix of
    the treated side and ``n_eff = 1 / sum(s_p^2 / n0_p)`` samples' worth of precision.  A profile
    the baseline lacks cannot be compared and is left out of both sides.
    """
    present = [(p, t, b) for p, t, b in parts if t is not None and t.count]
    kept = [(p, t, b) for p, t, b in present if b is not None and b.count >= min_baseline]
    if not kept:
        return None
    alpha = kept[0][1].alpha
    treated = DDSketch(alpha)
    for _, t, _ in kept:
        treated.merge(t)
    total = treated.count
    n_eff = 1.0 / sum((t.count / total) ** 2 / b.count for _, t, b in kept)
    baseline = DDSketch(alpha)
    for _, t, b in kept:
        w = _SCALE * (t.count / total) / b.count
        for i, c in b.bins.items():
            n = round(c * w)
            if n:
                baseline.bins[i] = baseline.bins.get(i, 0) + n
                baseline.count += n
    left = tuple(p for p, _, b in present if b is None or b.count < min_baseline)
    return Standardized(treated, baseline, n_eff, left)
